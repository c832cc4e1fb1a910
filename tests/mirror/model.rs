//! Mirror test: the schema model the workload generator keeps of its tables (the comparison reads
//! the catalogs instead).

use super::*;

/// ids 1..=KEYS in the int table; keys of the bigint table are `big_key(0..=KEYS)`.
pub(super) const KEYS: i64 = 1500;
pub(super) const BIG_STEP: i64 = 6_000_000_000_000_000;
/// Composite keys: a in 1..=COMP_A, b from B_POOL.
pub(super) const COMP_A: i64 = 60;
pub(super) const B_POOL: &[&str] = &[
    "",
    " ",
    "a",
    "A",
    "a ",
    "é",
    "e\u{301}",
    "ü",
    "日本",
    "😀",
    "👩‍💻",
    "'",
    "''",
    "\"",
    "\\",
    "\\\\",
    "tab\t",
    "nl\n",
    "%",
    "_",
    "NULL",
    "null",
    "0",
    "-1",
    "x'y\"z\\w",
];
/// The keyless table's group column takes values 1..=GROUPS; it is kept near FULL_CAP rows.
pub(super) const GROUPS: i64 = 100;
pub(super) const FULL_CAP: i64 = 2500;
pub(super) const MAX_COLS: usize = 30;

pub(super) fn big_key(k: i64) -> i64 {
    (k - KEYS / 2) * BIG_STEP
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    /// int4 primary key
    Int,
    /// (int4, text) primary key
    Comp,
    /// int8 primary key
    Big,
    /// no key, REPLICA IDENTITY FULL
    Full,
}

#[derive(Clone, Debug)]
pub(super) struct Col {
    pub(super) base: String,
    pub(super) name: String,
    pub(super) ty: Ty,
    pub(super) key: bool,
    /// Never dropped (the keyless table's group column).
    pub(super) protected: bool,
}

#[derive(Clone, Debug)]
pub(super) struct Tab {
    /// The name the table was created with (renames draw from names made of it).
    pub(super) base: String,
    pub(super) name: String,
    pub(super) kind: Kind,
    pub(super) cols: Vec<Col>,
}

impl Tab {
    pub(super) fn q(&self) -> String {
        qi(&self.name)
    }

    pub(super) fn keys(&self) -> Vec<&Col> {
        self.cols.iter().filter(|c| c.key).collect()
    }

    pub(super) fn key_list(&self) -> String {
        self.keys()
            .iter()
            .map(|c| qi(&c.name))
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub(super) fn non_key(&self) -> Vec<&Col> {
        self.cols.iter().filter(|c| !c.key).collect()
    }

    /// The group column of the keyless table.
    pub(super) fn group(&self) -> &Col {
        self.cols
            .iter()
            .find(|c| c.protected)
            .expect("group column")
    }

    pub(super) fn has_name(&self, name: &str) -> bool {
        // SQLite compares names case-insensitively (ASCII): keep them distinct that way too.
        self.cols.iter().any(|c| c.name.eq_ignore_ascii_case(name))
    }
}

#[derive(Default, Debug)]
pub(super) struct Stats {
    /// Committed row changes (TRUNCATE counts as one, as the plugin counts it).
    pub(super) changes: u64,
    pub(super) schema_changes: u64,
    pub(super) txns: u64,
    pub(super) rollbacks: u64,
    pub(super) savepoint_rollbacks: u64,
    pub(super) truncates: u64,
    pub(super) key_changes: u64,
    pub(super) failed_risky: u64,
    pub(super) statements: u64,
    pub(super) big_values: u64,
    /// Renames to a name of SQLite's row id (`rowid`, `_rowid_`, `oid`).
    pub(super) rowid_names: u64,
}

/// What one operation did, counted only if it commits.
#[derive(Default, Clone, Copy)]
pub(super) struct Done {
    pub(super) changes: u64,
    pub(super) ddl: u64,
}

impl std::ops::AddAssign for Done {
    fn add_assign(&mut self, o: Done) {
        self.changes += o.changes;
        self.ddl += o.ddl;
    }
}

/// With `PGTURSO_MIRROR_LOG=<file>`, every statement the test runs, in order, as a SQL script
/// (decoding calls included), to replay or minimise a failure.
pub(super) struct Log(pub(super) Option<std::io::BufWriter<std::fs::File>>);

impl Log {
    pub(super) fn open() -> Log {
        Log(std::env::var("PGTURSO_MIRROR_LOG").ok().map(|path| {
            std::io::BufWriter::new(
                std::fs::File::create(&path).unwrap_or_else(|e| panic!("{path}: {e}")),
            )
        }))
    }

    pub(super) fn line(&mut self, sql: &str) {
        if let Some(w) = &mut self.0 {
            use std::io::Write as _;
            writeln!(w, "{sql};").unwrap();
        }
    }

    pub(super) fn flush(&mut self) {
        if let Some(w) = &mut self.0 {
            use std::io::Write as _;
            w.flush().unwrap();
        }
    }
}
