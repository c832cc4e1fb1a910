//! Owned, database-free description of what was decoded: values, table shapes and row changes.
//!
//! `tuple.rs` fills these from PostgreSQL tuples; `sql.rs` turns them into SQLite statements.
//! Nothing here touches `pg_sys`, so everything downstream is testable without a database.

/// One value as it travels to Turso (the Hrana value types). Its `Serialize` is the Hrana wire
/// form (`hrana.rs`); [`ExactValue`] is the form a spool keeps.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Integer(i64),
    Float(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl Value {
    /// Rough number of bytes this value adds to a request body, used for batching limits.
    pub fn estimated_size(&self) -> usize {
        match self {
            Value::Null => 16,
            Value::Integer(_) | Value::Float(_) => 48,
            Value::Text(s) => 32 + s.len() + s.len() / 8,
            Value::Blob(b) => 32 + b.len().div_ceil(3) * 4,
        }
    }
}

/// [`Value`] as a spool writes it: every float bit and byte kept, nothing converted.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(remote = "Value")]
enum ExactValue {
    Null,
    Integer(i64),
    Float(f64),
    Text(String),
    Blob(Vec<u8>),
}

/// A column value in a decoded tuple.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Cell {
    Value(#[serde(with = "ExactValue")] Value),
    /// An unchanged TOASTed value that PostgreSQL did not write to WAL: leave it as it is in Turso.
    UnchangedToast,
}

/// The SQLite column type pgturso declares for a PostgreSQL type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlType {
    Integer,
    Real,
    Text,
    Blob,
}

impl SqlType {
    pub fn from_sql(s: &str) -> Option<SqlType> {
        [
            SqlType::Integer,
            SqlType::Real,
            SqlType::Text,
            SqlType::Blob,
        ]
        .into_iter()
        .find(|t| t.as_sql() == s)
    }

    pub fn as_sql(self) -> &'static str {
        match self {
            SqlType::Integer => "INTEGER",
            SqlType::Real => "REAL",
            SqlType::Text => "TEXT",
            SqlType::Blob => "BLOB",
        }
    }
}

/// A replicated column (dropped columns are never listed).
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    pub sql_type: SqlType,
    pub not_null: bool,
    /// PostgreSQL's attribute number: stable across renames, so renames can be told from drops.
    pub attnum: i16,
    /// The value rows written before an `ADD COLUMN … DEFAULT` have (PostgreSQL's "missing" value).
    pub missing: Option<Value>,
}

/// What pgturso knows about a replicated PostgreSQL table.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// Identifies the PostgreSQL table across renames: `<database oid>.<table oid>`.
    pub source: String,
    /// PostgreSQL schema and table name, for messages.
    pub pg_schema: String,
    pub pg_name: String,
    /// The table's name in Turso.
    pub turso_name: String,
    pub columns: Vec<Column>,
    /// Indexes into `columns` of the key that identifies a row (primary key or replica identity index).
    pub key: Vec<usize>,
    /// Whether `key` is the primary key (declared as PRIMARY KEY) or another unique replica identity index.
    pub key_is_primary: bool,
    /// REPLICA IDENTITY FULL: old tuples carry every column.
    pub identity_full: bool,
    /// The Turso shape of this table as text, computed once (see `Replicator::ensure_table`).
    pub shape: std::cell::OnceCell<String>,
}

impl Table {
    /// The Turso name: the table name for `public`, `schema.table` otherwise.
    pub fn turso_name_for(schema: &str, name: &str) -> String {
        if schema == "public" {
            name.to_string()
        } else {
            format!("{schema}.{name}")
        }
    }

    /// `schema.table` as PostgreSQL users write it in messages.
    pub fn display_name(&self) -> String {
        format!("{}.{}", self.pg_schema, self.pg_name)
    }
}

/// One decoded row change (serializable: a streamed transaction spools its changes to disk).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum RowChange {
    Insert {
        new: Vec<Cell>,
    },
    /// `old` is present when the key changed or the table has REPLICA IDENTITY FULL.
    Update {
        old: Option<Vec<Cell>>,
        new: Vec<Cell>,
    },
    /// `old` is absent when the table has no replica identity.
    Delete {
        old: Option<Vec<Cell>>,
    },
    /// A row of the table's new contents, written by an `ALTER TABLE` that rewrites the table
    /// (a column type change, a volatile default): the first row of a rewrite replaces the Turso
    /// table. `rewrite` tells one rewrite of a table from the next (the transient heap's oid).
    Rewrite {
        rewrite: u32,
        new: Vec<Cell>,
    },
}

/// Formats an LSN the way PostgreSQL prints it (`0/16B3748`).
pub fn format_lsn(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsn_formats_like_postgres() {
        assert_eq!(format_lsn(0x16B3748), "0/16B3748");
        assert_eq!(format_lsn((1u64 << 32) | 0xA), "1/A");
    }

    #[test]
    fn turso_names_keep_schemas_apart() {
        assert_eq!(Table::turso_name_for("public", "t"), "t");
        assert_eq!(Table::turso_name_for("a", "t"), "a.t");
        assert_ne!(
            Table::turso_name_for("a", "t"),
            Table::turso_name_for("b", "t")
        );
    }
}
