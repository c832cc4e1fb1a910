//! SQLite statements for decoded changes: identifiers quoted, values always bound as arguments.
//!
//! Inserts and updates that keep the key are upserts on the key, so applying a change to a row that
//! already has that state converges instead of failing; UPDATEs that change the key move the row.
//! `ddl` makes and changes tables, `dml` turns row changes into statements, `json` sends many rows
//! as one JSON argument; the key helpers shared by the last two are here.

use crate::model::{Cell, Table, Value};

/// One SQL statement with its positional arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct Stmt {
    pub sql: String,
    pub args: Vec<Value>,
}

impl Stmt {
    pub fn new(sql: impl Into<String>, args: Vec<Value>) -> Self {
        Stmt {
            sql: sql.into(),
            args,
        }
    }

    /// Rough size of this statement in a request body.
    pub fn estimated_size(&self) -> usize {
        64 + self.sql.len() + self.args.iter().map(Value::estimated_size).sum::<usize>()
    }
}

/// Quotes an identifier for SQLite: wrapped in double quotes, inner quotes doubled.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The PostgreSQL table of `table` as SQL names it, `"schema"."name"`, for hints a user can paste.
pub fn quoted_pg_name(table: &Table) -> String {
    format!(
        "{}.{}",
        quote_ident(&table.pg_schema),
        quote_ident(&table.pg_name)
    )
}

fn column_list(table: &Table, cols: &[usize]) -> String {
    cols.iter()
        .map(|&i| quote_ident(&table.columns[i].name))
        .collect::<Vec<_>>()
        .join(", ")
}

mod ddl;
mod dml;
mod json;
#[cfg(test)]
mod tests;

pub use ddl::*;
pub use dml::*;
pub use json::*;

/// What a change needs that Turso's table cannot give; `crate::error` makes it a PostgreSQL error.
#[derive(Debug, thiserror::Error)]
pub enum StmtError {
    #[error("cannot follow the schema change of table \"{table}\" in Turso: {what}")]
    SchemaChange { table: String, what: String },
    #[error("cannot replicate {operation} on table \"{table}\": it has no replica identity")]
    NoReplicaIdentity {
        table: String,
        /// The table name as SQL (quoted), for the hint.
        quoted: String,
        operation: String,
    },
}

/// The left side of `key IN (…)`: the key column, or a row value of the key columns.
fn key_target(table: &Table) -> String {
    if table.key.len() == 1 {
        quote_ident(&table.columns[table.key[0]].name)
    } else {
        format!("({})", column_list(table, &table.key))
    }
}

fn present(cells: &[Cell]) -> Vec<usize> {
    cells
        .iter()
        .enumerate()
        .filter(|(_, c)| matches!(c, Cell::Value(_)))
        .map(|(i, _)| i)
        .collect()
}

fn value(cells: &[Cell], i: usize) -> Value {
    match &cells[i] {
        Cell::Value(v) => v.clone(),
        Cell::UnchangedToast => Value::Null,
    }
}

fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

/// `ON CONFLICT (key) DO UPDATE SET ...` for keyed tables, empty otherwise.
pub fn upsert_clause(table: &Table, cols: &[usize]) -> String {
    if table.key.is_empty() {
        return String::new();
    }
    let sets: Vec<String> = cols
        .iter()
        .filter(|i| !table.key.contains(i))
        .map(|&i| {
            let c = quote_ident(&table.columns[i].name);
            format!("{c} = excluded.{c}")
        })
        .collect();
    let target = column_list(table, &table.key);
    if sets.is_empty() {
        format!(" ON CONFLICT ({target}) DO NOTHING")
    } else {
        format!(" ON CONFLICT ({target}) DO UPDATE SET {}", sets.join(", "))
    }
}

fn key_values(table: &Table, cells: &[Cell]) -> Option<Vec<Value>> {
    table
        .key
        .iter()
        .map(|&i| match cells.get(i) {
            Some(Cell::Value(Value::Null)) | Some(Cell::UnchangedToast) | None => None,
            Some(Cell::Value(v)) => Some(v.clone()),
        })
        .collect()
}

fn key_predicate(table: &Table) -> String {
    table
        .key
        .iter()
        .map(|&i| format!("{} = ?", quote_ident(&table.columns[i].name)))
        .collect::<Vec<_>>()
        .join(" AND ")
}
