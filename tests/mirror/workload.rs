//! Mirror test: the seeded workload generator, which writes transactions, schema changes and
//! truncates and counts the committed row changes.

use super::*;

pub(super) struct Gen {
    pub(super) rng: Rng,
    pub(super) log: Log,
    pub(super) tables: Vec<Tab>,
    /// Never give a table a shape it had earlier in the round: renames never reuse a name, no
    /// swaps, columns added in the round are not dropped in it.
    pub(super) fresh_names: bool,
    /// (table, column base name) of the columns added in this round.
    pub(super) added: Vec<(usize, String)>,
    /// Tables with a column renamed after the row id in this round.
    pub(super) rowid_round: Vec<usize>,
    /// Never name a column after SQLite's row id.
    pub(super) no_rowid: bool,
    pub(super) renames: u64,
    /// (table, column base name, previous name) of columns renamed lately.
    pub(super) recent: Vec<(usize, String, String)>,
    /// (table, column base names) of the last pair of names swapped in each table.
    pub(super) swapped: Vec<(usize, String, String)>,
    pub(super) stats: Stats,
    pub(super) in_txn: bool,
}

impl Gen {
    pub(super) fn new(seed: u64, fresh_names: bool, no_rowid: bool) -> Gen {
        let mut tables = Vec::new();
        for (name, kind) in [
            ("m_int", Kind::Int),
            ("M Comp ü\"q", Kind::Comp),
            ("m_big", Kind::Big),
            ("m_full", Kind::Full),
        ] {
            let mut cols = match kind {
                Kind::Int => vec![col("id", Ty::I4, true)],
                Kind::Comp => vec![col("a", Ty::I4, true), col("b key", Ty::Text, true)],
                Kind::Big => vec![col("id", Ty::I8, true)],
                Kind::Full => {
                    let mut g = col("g", Ty::I4, false);
                    g.protected = true;
                    vec![g]
                }
            };
            for ty in ALL_TYPES {
                let base = match (kind, ty) {
                    (Kind::Int, Ty::Text) => "Tëxt \"quoted\" col".to_string(),
                    (Kind::Full, Ty::Num) => "NumCol".to_string(),
                    _ => format!("c_{}", ty.short()),
                };
                cols.push(col(&base, ty, false));
            }
            tables.push(Tab {
                base: name.into(),
                name: name.into(),
                kind,
                cols,
            });
        }
        Gen {
            rng: Rng(seed),
            log: Log::open(),
            tables,
            fresh_names,
            added: Vec::new(),
            rowid_round: Vec::new(),
            no_rowid,
            renames: 0,
            recent: Vec::new(),
            swapped: Vec::new(),
            stats: Stats::default(),
            in_txn: false,
        }
    }

    pub(super) fn create_tables(&mut self, c: &mut postgres::Client) {
        for t in &self.tables {
            let mut defs: Vec<String> = t
                .cols
                .iter()
                .map(|c| format!("{} {}", qi(&c.name), c.ty.pg_type()))
                .collect();
            if t.kind != Kind::Full {
                defs.push(format!("PRIMARY KEY ({})", t.key_list()));
            }
            let mut sql = format!("CREATE TABLE {} ({});", t.q(), defs.join(", "));
            for c in t.cols.iter().filter(|c| c.ty == Ty::Big) {
                write!(
                    sql,
                    "ALTER TABLE {} ALTER COLUMN {} SET STORAGE EXTERNAL;",
                    t.q(),
                    qi(&c.name)
                )
                .unwrap();
            }
            if t.kind == Kind::Full {
                write!(sql, "ALTER TABLE {} REPLICA IDENTITY FULL;", t.q()).unwrap();
            }
            self.log.line(&sql);
            c.batch_execute(&sql)
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
    }

    // --- statement execution ---

    /// Transaction control and other statements that cannot fail.
    pub(super) fn batch(&mut self, c: &mut postgres::Client, sql: &str) {
        self.log.line(sql);
        c.batch_execute(sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    pub(super) fn exec(&mut self, c: &mut postgres::Client, sql: &str) -> u64 {
        self.stats.statements += 1;
        self.log.line(sql);
        c.execute(sql, &[])
            .unwrap_or_else(|e| panic!("generated statement failed: {e}\n{}", shorten(sql, 2000)))
    }

    /// A statement that may fail (a key collision): inside a savepoint, rolled back if it does.
    pub(super) fn exec_risky(&mut self, c: &mut postgres::Client, sql: &str) -> u64 {
        self.stats.statements += 1;
        if self.in_txn {
            self.batch(c, "SAVEPOINT risky");
        }
        self.log.line(sql);
        match c.execute(sql, &[]) {
            Ok(n) => {
                if self.in_txn {
                    self.batch(c, "RELEASE SAVEPOINT risky");
                }
                n
            }
            Err(e) => {
                let code = e.code().map(|c| c.code().to_string()).unwrap_or_default();
                // unique_violation, numeric_value_out_of_range
                assert!(
                    code == "23505" || code == "22003",
                    "risky statement failed unexpectedly: {e}\n{}",
                    shorten(sql, 2000)
                );
                self.stats.failed_risky += 1;
                if self.in_txn {
                    self.batch(c, "ROLLBACK TO SAVEPOINT risky; RELEASE SAVEPOINT risky");
                }
                0
            }
        }
    }

    pub(super) fn ddl(&mut self, c: &mut postgres::Client, sql: &str) {
        self.stats.statements += 1;
        self.log.line(sql);
        c.batch_execute(sql)
            .unwrap_or_else(|e| panic!("generated DDL failed: {e}\n{sql}"));
    }

    // --- keys ---

    /// Literals for a random key (in key column order).
    pub(super) fn rand_key(&mut self, kind: Kind) -> Vec<String> {
        match kind {
            Kind::Int => vec![self.rng.range(1, KEYS).to_string()],
            Kind::Comp => vec![
                self.rng.range(1, COMP_A).to_string(),
                lit(self.rng.pick::<&str>(B_POOL)),
            ],
            Kind::Big => {
                let k = match self.rng.weighted(&[1, 1, 98]) {
                    0 => i64::MIN,
                    1 => i64::MAX,
                    _ => big_key(self.rng.range(0, KEYS)),
                };
                vec![format!("'{k}'::int8")]
            }
            Kind::Full => unreachable!("the keyless table has no key"),
        }
    }

    /// `(key) = (the first existing key at or after a random key)`: hits a row whenever one is
    /// there, deterministically.
    pub(super) fn existing_key_pred(&mut self, t: &Tab) -> String {
        let k = self.rand_key(t.kind);
        let list = t.key_list();
        format!(
            "({list}) = (SELECT {list} FROM {} WHERE ({list}) >= ({}) ORDER BY {list} LIMIT 1)",
            t.q(),
            k.join(", ")
        )
    }

    pub(super) fn key_eq(t: &Tab, alias: &str, vals: &[String]) -> String {
        t.keys()
            .iter()
            .zip(vals)
            .map(|(c, v)| format!("{alias}{} = {v}", qi(&c.name)))
            .collect::<Vec<_>>()
            .join(" AND ")
    }

    /// A key range predicate on the first key column: `k BETWEEN lo AND hi`.
    pub(super) fn key_range(&mut self, t: &Tab, width: i64) -> String {
        let k0 = qi(&t.keys()[0].name);
        match t.kind {
            Kind::Int => {
                let lo = self.rng.range(1, KEYS);
                format!("{k0} BETWEEN {lo} AND {}", lo + width)
            }
            Kind::Comp => {
                let lo = self.rng.range(1, COMP_A);
                format!("{k0} BETWEEN {lo} AND {}", lo + width / 20)
            }
            Kind::Big => {
                let lo = self.rng.range(0, KEYS);
                format!(
                    "{k0} BETWEEN '{}'::int8 AND '{}'::int8",
                    big_key(lo),
                    big_key((lo + width).min(KEYS))
                )
            }
            Kind::Full => unreachable!(),
        }
    }

    /// `col = value` assignments for 1..=n random non-key columns; Big columns are set only
    /// with probability `big_p`, so updates that leave TOASTed values alone are common.
    pub(super) fn assignments(&mut self, t: &Tab, n: (i64, i64), big_p: f64) -> Vec<String> {
        let n = self.rng.range(n.0, n.1) as usize;
        let all: Vec<Col> = t
            .non_key()
            .into_iter()
            .filter(|c| !c.protected)
            .cloned()
            .collect();
        let mut cols: Vec<Col> = all
            .iter()
            .filter(|c| c.ty != Ty::Big || self.rng.chance(big_p))
            .cloned()
            .collect();
        if cols.is_empty() {
            cols = all;
        }
        let mut out = Vec::new();
        for _ in 0..n.min(cols.len()) {
            let i = self.rng.below(cols.len() as u64) as usize;
            let c = cols.swap_remove(i);
            let v = value_or_null(&mut self.rng, c.ty, &mut self.stats);
            out.push(format!("{} = {v}", qi(&c.name)));
        }
        out
    }

    pub(super) fn row_values(&mut self, cols: &[Col]) -> Vec<String> {
        cols.iter()
            .map(|c| value_or_null(&mut self.rng, c.ty, &mut self.stats))
            .collect()
    }

    // --- operations ---

    pub(super) fn op(&mut self, c: &mut postgres::Client) -> Done {
        let ti = self.rng.weighted(&[30, 25, 20, 25]);
        let t = self.tables[ti].clone();
        let choice = self.rng.weighted(&[50, 12, 44, 16, 16, 4, 24, 10, 1, 8]);
        let changes = match (choice, t.kind) {
            (9, _) => return self.schema_change(c, ti),
            (8, _) => {
                self.exec(c, &format!("TRUNCATE {}", t.q()));
                self.stats.truncates += 1;
                1
            }
            (0, Kind::Full) => self.insert_full(c, &t),
            (0, _) => self.insert_keyed(c, &t),
            (1, _) => self.bulk_insert(c, &t),
            (2, Kind::Full) => {
                let set = self.assignments(&t, (1, 4), 0.2);
                let one = self.one_full_row(&t);
                self.exec(
                    c,
                    &format!("UPDATE {} SET {} WHERE {one}", t.q(), set.join(", ")),
                )
            }
            (2, _) => {
                let set = self.assignments(&t, (1, 4), 0.2);
                let pred = self.existing_key_pred(&t);
                self.exec(
                    c,
                    &format!("UPDATE {} SET {} WHERE {pred}", t.q(), set.join(", ")),
                )
            }
            (3, Kind::Full) => {
                let set = self.assignments(&t, (1, 3), 0.1);
                let g = self.rng.range(1, GROUPS);
                let gq = qi(&t.group().name);
                self.exec(
                    c,
                    &format!("UPDATE {} SET {} WHERE {gq} = {g}", t.q(), set.join(", ")),
                )
            }
            (3, _) => {
                let set = self.assignments(&t, (1, 3), 0.1);
                let width = self.rng.range(0, 60);
                let range = self.key_range(&t, width);
                self.exec(
                    c,
                    &format!("UPDATE {} SET {} WHERE {range}", t.q(), set.join(", ")),
                )
            }
            (4, Kind::Full) => {
                // Duplicate an existing row exactly (a multiset with repeated rows).
                let one = self.one_full_row(&t);
                self.exec(
                    c,
                    &format!("INSERT INTO {q} SELECT * FROM {q} WHERE {one}", q = t.q()),
                )
            }
            (4, _) => self.key_change(c, &t),
            (5, Kind::Full) => {
                let g = self.rng.range(1, GROUPS);
                let gq = qi(&t.group().name);
                let to = self.rng.range(1, GROUPS);
                self.exec(
                    c,
                    &format!("UPDATE {} SET {gq} = {to} WHERE {gq} = {g}", t.q()),
                )
            }
            (5, _) => self.key_shift(c, &t),
            (6, Kind::Full) => {
                let one = self.one_full_row(&t);
                self.exec(c, &format!("DELETE FROM {} WHERE {one}", t.q()))
            }
            (6, _) => {
                let pred = self.existing_key_pred(&t);
                self.exec(c, &format!("DELETE FROM {} WHERE {pred}", t.q()))
            }
            (7, Kind::Full) => {
                let g = self.rng.range(1, GROUPS);
                let gq = qi(&t.group().name);
                self.exec(c, &format!("DELETE FROM {} WHERE {gq} = {g}", t.q()))
            }
            (7, _) => {
                let width = self.rng.range(0, 40);
                let range = self.key_range(&t, width);
                self.exec(c, &format!("DELETE FROM {} WHERE {range}", t.q()))
            }
            _ => unreachable!(),
        };
        Done { changes, ddl: 0 }
    }

    /// One row of the keyless table, chosen deterministically (whole-row text order).
    pub(super) fn one_full_row(&mut self, t: &Tab) -> String {
        let g = self.rng.range(1, GROUPS);
        let gq = qi(&t.group().name);
        format!(
            "ctid = (SELECT ctid FROM {q} x WHERE x.{gq} = (SELECT min({gq}) FROM {q} WHERE {gq} >= {g}) ORDER BY x::text LIMIT 1)",
            q = t.q(),
        )
    }

    /// Random columns (all, or a random subset) for an INSERT; the key is always included.
    pub(super) fn insert_columns(&mut self, t: &Tab) -> Vec<Col> {
        let all = self.rng.chance(0.6);
        t.cols
            .iter()
            .filter(|c| c.key || c.protected || all || self.rng.chance(0.5))
            .cloned()
            .collect()
    }

    pub(super) fn insert_keyed(&mut self, c: &mut postgres::Client, t: &Tab) -> u64 {
        let cols = self.insert_columns(t);
        let mut keys_seen = Vec::new();
        let mut rows = Vec::new();
        for _ in 0..self.rng.range(1, 5) {
            let key = self.rand_key(t.kind);
            // One statement may not upsert the same key twice.
            if keys_seen.contains(&key) {
                continue;
            }
            keys_seen.push(key.clone());
            let mut vals = self.row_values(&cols);
            let mut k = key.into_iter();
            for (i, col) in cols.iter().enumerate() {
                if col.key {
                    vals[i] = k.next().expect("key value");
                }
            }
            rows.push(format!("({})", vals.join(", ")));
        }
        let names: Vec<String> = cols.iter().map(|c| qi(&c.name)).collect();
        let mut sql = format!(
            "INSERT INTO {} ({}) VALUES {}",
            t.q(),
            names.join(", "),
            rows.join(", ")
        );
        match self.rng.weighted(&[45, 35, 20]) {
            0 => {
                let sets: Vec<String> = cols
                    .iter()
                    .filter(|c| !c.key)
                    .filter(|c| self.rng.chance(if c.ty == Ty::Big { 0.3 } else { 0.6 }))
                    .map(|c| format!("{q} = EXCLUDED.{q}", q = qi(&c.name)))
                    .collect();
                if sets.is_empty() {
                    write!(sql, " ON CONFLICT ({}) DO NOTHING", t.key_list()).unwrap();
                } else {
                    write!(
                        sql,
                        " ON CONFLICT ({}) DO UPDATE SET {}",
                        t.key_list(),
                        sets.join(", ")
                    )
                    .unwrap();
                }
            }
            1 => write!(sql, " ON CONFLICT ({}) DO NOTHING", t.key_list()).unwrap(),
            _ => return self.exec_risky(c, &sql),
        }
        self.exec(c, &sql)
    }

    pub(super) fn insert_full(&mut self, c: &mut postgres::Client, t: &Tab) -> u64 {
        let cols = self.insert_columns(t);
        let n = self.rng.range(1, 5);
        let mut rows = Vec::new();
        for _ in 0..n {
            let mut vals = self.row_values(&cols);
            for (i, col) in cols.iter().enumerate() {
                if col.protected {
                    vals[i] = self.rng.range(1, GROUPS).to_string();
                }
            }
            rows.push(format!("({})", vals.join(", ")));
        }
        let names: Vec<String> = cols.iter().map(|c| qi(&c.name)).collect();
        self.exec(
            c,
            &format!(
                "INSERT INTO {} ({}) VALUES {}",
                t.q(),
                names.join(", "),
                rows.join(", ")
            ),
        )
    }

    pub(super) fn bulk_insert(&mut self, c: &mut postgres::Client, t: &Tab) -> u64 {
        let salt = self.rng.range(0, 1_000_000);
        let n = self.rng.range(20, 200);
        let (lo, hi) = match t.kind {
            Kind::Comp => {
                let lo = self.rng.range(1, COMP_A);
                (lo, (lo + n / 5).min(COMP_A))
            }
            _ => {
                let lo = self.rng.range(1, KEYS);
                (lo, (lo + n).min(KEYS))
            }
        };
        let fixed_b = lit(self.rng.pick::<&str>(B_POOL));
        let mut names = Vec::new();
        let mut exprs = Vec::new();
        let with_all = self.rng.chance(0.5);
        for col in &t.cols {
            let e = match (t.kind, col.key, col.protected) {
                (Kind::Int, true, _) => "g".to_string(),
                (Kind::Comp, true, _) if col.ty == Ty::I4 => "g".to_string(),
                (Kind::Comp, true, _) => fixed_b.clone(),
                (Kind::Big, true, _) => format!("(g - {})::int8 * {BIG_STEP}", KEYS / 2),
                (Kind::Full, _, true) => format!("(g % {GROUPS}) + 1"),
                _ if with_all || self.rng.chance(0.5) => bulk_expr(col.ty, salt),
                _ => continue,
            };
            names.push(qi(&col.name));
            exprs.push(e);
        }
        let conflict = if t.kind == Kind::Full {
            String::new()
        } else if self.rng.chance(0.3) {
            format!(" ON CONFLICT ({}) DO NOTHING", t.key_list())
        } else {
            let sets: Vec<String> = t
                .non_key()
                .iter()
                .filter(|c| names.contains(&qi(&c.name)) && self.rng.chance(0.7))
                .map(|c| format!("{q} = EXCLUDED.{q}", q = qi(&c.name)))
                .collect();
            if sets.is_empty() {
                format!(" ON CONFLICT ({}) DO NOTHING", t.key_list())
            } else {
                format!(
                    " ON CONFLICT ({}) DO UPDATE SET {}",
                    t.key_list(),
                    sets.join(", ")
                )
            }
        };
        self.exec(
            c,
            &format!(
                "INSERT INTO {} ({}) SELECT {} FROM generate_series({lo}, {hi}) g{conflict}",
                t.q(),
                names.join(", "),
                exprs.join(", ")
            ),
        )
    }

    /// Moves one row to a new key (when the new key is free), maybe changing other columns.
    pub(super) fn key_change(&mut self, c: &mut postgres::Client, t: &Tab) -> u64 {
        let new = self.rand_key(t.kind);
        let mut set: Vec<String> = t
            .keys()
            .iter()
            .zip(&new)
            .filter(|_| t.kind != Kind::Comp || self.rng.chance(0.7))
            .map(|(k, v)| format!("{} = {v}", qi(&k.name)))
            .collect();
        if set.is_empty() {
            set.push(format!("{} = {}", qi(&t.keys()[1].name), new[1]));
        }
        if self.rng.chance(0.5) {
            set.extend(self.assignments(t, (1, 2), 0.3));
        }
        let pred = self.existing_key_pred(t);
        // The row's key after the update: the new values for the keys set, the old ones otherwise.
        let after: Vec<String> = t
            .keys()
            .iter()
            .zip(&new)
            .map(|(k, v)| {
                if set
                    .iter()
                    .any(|s| s.starts_with(&format!("{} = ", qi(&k.name))))
                {
                    v.clone()
                } else {
                    format!("{}.{}", t.q(), qi(&k.name))
                }
            })
            .collect();
        let free = Self::key_eq(t, "x.", &after);
        let n = self.exec(
            c,
            &format!(
                "UPDATE {q} SET {} WHERE {pred} AND NOT EXISTS (SELECT 1 FROM {q} x WHERE {free})",
                set.join(", "),
                q = t.q()
            ),
        );
        self.stats.key_changes += n;
        n
    }

    /// Shifts the keys of a range of rows (fails, and is rolled back, on a collision).
    pub(super) fn key_shift(&mut self, c: &mut postgres::Client, t: &Tab) -> u64 {
        let k0 = qi(&t.keys()[0].name);
        let sql = match t.kind {
            Kind::Int => {
                let lo = self.rng.range(1, KEYS - 50);
                let hi = lo + self.rng.range(0, 30);
                let d = self.rng.range(1 - lo, KEYS - hi);
                format!(
                    "UPDATE {} SET {k0} = {k0} + {d} WHERE {k0} BETWEEN {lo} AND {hi}",
                    t.q()
                )
            }
            Kind::Comp => {
                let lo = self.rng.range(1, COMP_A - 5);
                let hi = lo + self.rng.range(0, 4);
                let d = self.rng.range(1 - lo, COMP_A - hi);
                format!(
                    "UPDATE {} SET {k0} = {k0} + {d} WHERE {k0} BETWEEN {lo} AND {hi}",
                    t.q()
                )
            }
            Kind::Big => {
                let lo = self.rng.range(0, KEYS - 50);
                let hi = lo + self.rng.range(0, 30);
                let d = self.rng.range(-lo, KEYS - hi);
                format!(
                    "UPDATE {} SET {k0} = {k0} + '{}'::int8 WHERE {k0} BETWEEN '{}'::int8 AND '{}'::int8",
                    t.q(),
                    d * BIG_STEP,
                    big_key(lo),
                    big_key(hi)
                )
            }
            Kind::Full => unreachable!(),
        };
        let n = self.exec_risky(c, &sql);
        self.stats.key_changes += n;
        n
    }

    /// A new name for a column: from a small pool (so names come back), or a fresh one.
    pub(super) fn new_name(&mut self, ti: usize, col: &Col) -> Option<String> {
        let t = &self.tables[ti];
        // SQLite gives the row id's names a meaning (case-insensitively): a keyless table needs
        // one a column does not hide, so at most two of them are used at a time. With
        // `shape-repeats` avoided, at most once per table and round (so no name comes back).
        let aliases = ["rowid", "_rowid_", "oid"];
        let hidden = aliases.iter().filter(|a| t.has_name(a)).count();
        let used_this_round = self.fresh_names && self.rowid_round.contains(&ti);
        let rowid_ok = t.kind == Kind::Full
            && !col.protected
            && !self.no_rowid
            && hidden < 2
            && !aliases.iter().any(|a| col.name.eq_ignore_ascii_case(a))
            && !used_this_round;
        let name = if rowid_ok && self.rng.chance(0.3) {
            if self.fresh_names {
                self.rowid_round.push(ti);
            }
            self.rng
                .pick(&["rowid", "RowId", "_rowid_", "OID"])
                .to_string()
        } else if self.fresh_names {
            self.renames += 1;
            format!("{}_r{}", col.base, self.renames)
        } else {
            let pool = [
                col.base.clone(),
                format!("{}_x", col.base),
                format!("{} É", col.base),
                format!("{}\"q", col.base),
            ];
            self.rng.pick(&pool).clone()
        };
        if self.tables[ti].has_name(&name) {
            return None;
        }
        if aliases.iter().any(|a| name.eq_ignore_ascii_case(a)) {
            self.stats.rowid_names += 1;
        }
        Some(name)
    }

    /// A schema change on table `ti`, followed in the same transaction by a row change of that
    /// table (pgturso applies schema changes with the table's next data).
    pub(super) fn schema_change(&mut self, c: &mut postgres::Client, ti: usize) -> Done {
        let t = self.tables[ti].clone();
        let droppable: Vec<usize> = t
            .cols
            .iter()
            .enumerate()
            .filter(|(_, c)| !c.key && !c.protected)
            .filter(|(_, c)| !self.fresh_names || !self.added.contains(&(ti, c.base.clone())))
            .map(|(i, _)| i)
            .collect();
        let retypable: Vec<(usize, Ty)> = t
            .cols
            .iter()
            .enumerate()
            .filter(|(_, c)| !c.protected && (!c.key || (t.kind == Kind::Int && c.ty == Ty::I4)))
            .filter_map(|(i, c)| retyped(c.ty).map(|to| (i, to)))
            .collect();
        // add, drop, rename, swap names (never with shape-repeats avoided), rename the table,
        // change a column's type (PostgreSQL rewrites the table), reorder the composite key
        let what = self.rng.weighted(&[
            if t.cols.len() < MAX_COLS { 3 } else { 0 },
            if droppable.len() > 3 { 2 } else { 0 },
            3,
            if self.fresh_names { 0 } else { 2 },
            1,
            if retypable.is_empty() { 0 } else { 2 },
            if t.kind == Kind::Comp { 1 } else { 0 },
        ]);
        let mut touched = None;
        match what {
            0 => {
                // ADD COLUMN, with a default now and then; TOAST-able columns get external storage.
                let has_big = t.cols.iter().any(|c| c.ty == Ty::Big);
                let ty = if !has_big && self.rng.chance(0.3) {
                    Ty::Big
                } else {
                    *self.rng.pick(&ALL_TYPES)
                };
                let base = format!("n{}_{}", self.rng.below(1_000_000), ty.short());
                if t.has_name(&base) {
                    return Done::default();
                }
                let mut sql = format!(
                    "ALTER TABLE {} ADD COLUMN {} {}",
                    t.q(),
                    qi(&base),
                    ty.pg_type()
                );
                if self.rng.chance(0.5) {
                    let d = if ty == Ty::Big {
                        lit(&rand_text(&mut self.rng, 30))
                    } else {
                        value_lit(&mut self.rng, ty, &mut self.stats)
                    };
                    // A TOAST-sized default is not a plain constant: keep defaults small.
                    if d.len() < 1500 {
                        write!(sql, " DEFAULT {d}").unwrap();
                    }
                }
                if ty == Ty::Big {
                    write!(
                        sql,
                        "; ALTER TABLE {} ALTER COLUMN {} SET STORAGE EXTERNAL",
                        t.q(),
                        qi(&base)
                    )
                    .unwrap();
                }
                self.ddl(c, &sql);
                self.tables[ti].cols.push(col(&base, ty, false));
                self.added.push((ti, base.clone()));
                touched = Some(base);
            }
            1 => {
                // DROP COLUMN: by default often of a column added in this round, which gives the
                // table a shape back it had earlier in the round.
                let added: Vec<usize> = droppable
                    .iter()
                    .copied()
                    .filter(|&i| self.added.contains(&(ti, t.cols[i].base.clone())))
                    .collect();
                let i = if !added.is_empty() && self.rng.chance(0.5) {
                    *self.rng.pick(&added)
                } else {
                    *self.rng.pick(&droppable)
                };
                let name = t.cols[i].name.clone();
                self.ddl(
                    c,
                    &format!("ALTER TABLE {} DROP COLUMN {}", t.q(), qi(&name)),
                );
                self.tables[ti].cols.remove(i);
            }
            2 => {
                // RENAME COLUMN, key columns included: by default often a column renamed lately
                // gets its previous name back.
                let back: Vec<(usize, String)> = if self.fresh_names {
                    Vec::new()
                } else {
                    self.recent
                        .iter()
                        .filter(|r| r.0 == ti)
                        .filter_map(|(_, base, prev)| {
                            let i = t.cols.iter().position(|c| &c.base == base)?;
                            (!t.has_name(prev)).then(|| (i, prev.clone()))
                        })
                        .collect()
                };
                let (i, to) = if !back.is_empty() && self.rng.chance(0.5) {
                    self.rng.pick(&back).clone()
                } else {
                    let i = self.rng.below(t.cols.len() as u64) as usize;
                    match self.new_name(ti, &t.cols[i]) {
                        Some(to) => (i, to),
                        None => return Done::default(),
                    }
                };
                let from = t.cols[i].name.clone();
                self.ddl(
                    c,
                    &format!(
                        "ALTER TABLE {} RENAME COLUMN {} TO {}",
                        t.q(),
                        qi(&from),
                        qi(&to)
                    ),
                );
                self.recent.push((ti, t.cols[i].base.clone(), from));
                if self.recent.len() > 8 {
                    self.recent.remove(0);
                }
                self.tables[ti].cols[i].name = to.clone();
                touched = Some(to);
            }
            3 => {
                // Swap two names (through a temporary one): by default often the pair swapped
                // last, which swaps the names back.
                let pos = |base: &String| t.cols.iter().position(|c| &c.base == base);
                let again = self
                    .swapped
                    .iter()
                    .filter(|s| s.0 == ti)
                    .find_map(|(_, a, b)| Some((pos(a)?, pos(b)?)));
                let (i, j) = match again {
                    Some(pair) if self.rng.chance(0.5) => pair,
                    _ => (
                        self.rng.below(t.cols.len() as u64) as usize,
                        self.rng.below(t.cols.len() as u64) as usize,
                    ),
                };
                if i == j {
                    return Done::default();
                }
                let (a, b) = (t.cols[i].name.clone(), t.cols[j].name.clone());
                let tmp = format!("swap_tmp_{}", self.rng.below(1_000_000));
                self.ddl(
                    c,
                    &format!(
                        "ALTER TABLE {q} RENAME COLUMN {a} TO {t}; ALTER TABLE {q} RENAME COLUMN {b} TO {a}; ALTER TABLE {q} RENAME COLUMN {t} TO {b}",
                        q = t.q(),
                        a = qi(&a),
                        b = qi(&b),
                        t = qi(&tmp)
                    ),
                );
                self.swapped.retain(|s| s.0 != ti);
                self.swapped
                    .push((ti, t.cols[i].base.clone(), t.cols[j].base.clone()));
                let cols = &mut self.tables[ti].cols;
                cols[i].name = b.clone();
                cols[j].name = a;
                touched = Some(b);
            }
            4 => {
                // RENAME TO: by default among three names (so a table gets its name back).
                let to = if self.fresh_names {
                    self.renames += 1;
                    format!("{}_t{}", t.base, self.renames)
                } else {
                    let pool = [
                        t.base.clone(),
                        format!("{}_b", t.base),
                        format!("{} Ü", t.base),
                    ];
                    self.rng.pick(&pool).clone()
                };
                if to == t.name {
                    return Done::default();
                }
                self.ddl(c, &format!("ALTER TABLE {} RENAME TO {}", t.q(), qi(&to)));
                self.tables[ti].name = to;
            }
            5 => {
                // ALTER COLUMN … TYPE, the key column of an int4 key included.
                let (i, to) = *self.rng.pick(&retypable);
                let name = t.cols[i].name.clone();
                self.ddl(
                    c,
                    &format!(
                        "ALTER TABLE {q} ALTER COLUMN {n} TYPE {ty} USING {n}::{ty}",
                        q = t.q(),
                        n = qi(&name),
                        ty = to.pg_type()
                    ),
                );
                self.tables[ti].cols[i].ty = to;
                touched = Some(name);
            }
            6 => {
                // The composite primary key again over its columns in the other order: another
                // key for pgturso (the Turso table is rebuilt).
                let conname: String = c
                    .query_one(
                        "SELECT conname::text FROM pg_constraint WHERE conrelid = $1::text::regclass AND contype = 'p'",
                        &[&t.q()],
                    )
                    .unwrap()
                    .get(0);
                let (mut cols, order): (Vec<String>, Option<String>) = (
                    t.keys().iter().map(|k| qi(&k.name)).collect(),
                    c.query_one(
                        "SELECT string_agg(a.attname::text, ',' ORDER BY k.n) FROM pg_constraint p, unnest(p.conkey) WITH ORDINALITY AS k(att, n), pg_attribute a WHERE p.conrelid = $1::text::regclass AND p.contype = 'p' AND a.attrelid = p.conrelid AND a.attnum = k.att",
                        &[&t.q()],
                    )
                    .unwrap()
                    .get(0),
                );
                // In the order it has not now.
                if order.as_deref().and_then(|o| o.split(',').next())
                    == t.keys().first().map(|k| k.name.as_str())
                {
                    cols.reverse();
                }
                self.ddl(
                    c,
                    &format!(
                        "ALTER TABLE {} DROP CONSTRAINT {}, ADD PRIMARY KEY ({})",
                        t.q(),
                        qi(&conname),
                        cols.join(", ")
                    ),
                );
            }
            _ => unreachable!(),
        }
        // A row change that always happens, writing the changed column when it is a data column.
        let t = self.tables[ti].clone();
        let target = t
            .non_key()
            .into_iter()
            .find(|c| Some(&c.name) == touched.as_ref() && !c.protected)
            .or_else(|| t.non_key().into_iter().find(|c| !c.protected))
            .expect("a data column")
            .clone();
        let v = value_or_null(&mut self.rng, target.ty, &mut self.stats);
        let sql = if t.kind == Kind::Full {
            format!(
                "INSERT INTO {} ({}, {}) VALUES ({}, {v})",
                t.q(),
                qi(&t.group().name),
                qi(&target.name),
                self.rng.range(1, GROUPS)
            )
        } else {
            let k = self.rand_key(t.kind);
            format!(
                "INSERT INTO {} ({}, {}) VALUES ({}, {v}) ON CONFLICT ({}) DO UPDATE SET {q} = EXCLUDED.{q}",
                t.q(),
                t.key_list(),
                qi(&target.name),
                k.join(", "),
                t.key_list(),
                q = qi(&target.name)
            )
        };
        let n = self.exec(c, &sql);
        assert_eq!(n, 1, "{sql}");
        Done { changes: 1, ddl: 1 }
    }

    /// One transaction: autocommit statements, or BEGIN … COMMIT/ROLLBACK with maybe a
    /// savepoint that is released or rolled back. Returns what committed.
    pub(super) fn transaction(&mut self, c: &mut postgres::Client) -> Done {
        self.stats.txns += 1;
        if self.rng.chance(0.1) {
            let mut done = Done::default();
            for _ in 0..self.rng.range(1, 3) {
                done += self.op(c);
            }
            return done;
        }
        let n_ops = match self.rng.weighted(&[40, 40, 15, 5]) {
            0 => self.rng.range(1, 3),
            1 => self.rng.range(4, 10),
            2 => self.rng.range(11, 30),
            _ => self.rng.range(31, 80),
        };
        let sp = self.rng.chance(0.25).then(|| self.rng.range(0, n_ops - 1));
        let sp_end = sp.map(|s| self.rng.range(s, n_ops - 1));
        self.batch(c, "BEGIN");
        self.in_txn = true;
        let before = self.tables.clone();
        let mut at_sp = None;
        let mut outer = Done::default();
        let mut inner = Done::default();
        for i in 0..n_ops {
            if Some(i) == sp {
                self.batch(c, "SAVEPOINT sp");
                at_sp = Some(self.tables.clone());
            }
            let d = self.op(c);
            if at_sp.is_some() {
                inner += d;
            } else {
                outer += d;
            }
            if Some(i) == sp_end {
                let saved = at_sp.take().expect("inside the savepoint");
                if self.rng.chance(0.6) {
                    self.batch(c, "ROLLBACK TO SAVEPOINT sp");
                    self.tables = saved;
                    self.stats.savepoint_rollbacks += 1;
                } else {
                    self.batch(c, "RELEASE SAVEPOINT sp");
                    outer += inner;
                }
                inner = Done::default();
            }
        }
        self.in_txn = false;
        if self.rng.chance(0.1) {
            self.batch(c, "ROLLBACK");
            self.tables = before;
            self.stats.rollbacks += 1;
            return Done::default();
        }
        self.batch(c, "COMMIT");
        outer
    }
}

pub(super) fn col(name: &str, ty: Ty, key: bool) -> Col {
    Col {
        base: name.into(),
        name: name.into(),
        ty,
        key,
        protected: false,
    }
}

/// The type a column of type `ty` can be changed to (`ALTER COLUMN … TYPE … USING col::type`),
/// which changes its PostgreSQL representation, its Turso type or both.
fn retyped(ty: Ty) -> Option<Ty> {
    Some(match ty {
        Ty::I2 => Ty::I4,
        Ty::I4 => Ty::I8,
        Ty::I8 | Ty::F8 => Ty::Num,
        Ty::Bool => Ty::I4,
        Ty::F4 => Ty::F8,
        Ty::Num | Ty::Uuid | Ty::Jsonb | Ty::IntArr | Ty::Interval | Ty::Bytea => Ty::Text,
        Ty::Varchar => Ty::Text,
        Ty::Text => Ty::Varchar,
        Ty::Date => Ty::Ts,
        Ty::Ts => Ty::Tstz,
        Ty::Tstz | Ty::TextArr | Ty::Big => return None,
    })
}
