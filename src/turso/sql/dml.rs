//! Row changes as statements: upserts on the key, moves for key changes, deletes by key or by the
//! whole old row (REPLICA IDENTITY FULL without a key), and the merged forms of many rows.

use super::*;
use crate::model::{Cell, RowChange, Table, Value};

/// SQLite's limit on bound parameters in one statement.
pub const MAX_PARAMS: usize = 32_766;

/// A row change reduced to what can be merged with its neighbours into one statement.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Upsert (plain insert for keyless tables) of the columns `cols` with `values`.
    Upsert {
        cols: Vec<usize>,
        values: Vec<Value>,
    },
    /// Delete by key.
    DeleteKey { key: Vec<Value> },
    /// Anything else: a statement of its own.
    Single(Stmt),
}

/// The statement that applies one row change, on its own.
pub fn row_change(table: &Table, change: RowChange) -> Result<Stmt, StmtError> {
    Ok(match row_op(table, change)? {
        Op::Upsert { cols, values } => upsert_rows(table, &cols, &[values]),
        Op::DeleteKey { key } => delete_keys(table, &[key]),
        Op::Single(stmt) => stmt,
    })
}

/// One row change as an [`Op`] (its values move into it).
pub fn row_op(table: &Table, change: RowChange) -> Result<Op, StmtError> {
    match change {
        RowChange::Insert { new } | RowChange::Rewrite { new, .. } => Ok(upsert_op(new)),
        RowChange::Update { old, new } => update(table, old.as_deref(), new),
        RowChange::Delete { old } => delete(table, old.as_deref()),
    }
}

pub(super) fn upsert_op(new: Vec<Cell>) -> Op {
    let cols = present(&new);
    let values = new
        .into_iter()
        .filter_map(|c| match c {
            Cell::Value(v) => Some(v),
            Cell::UnchangedToast => None,
        })
        .collect();
    Op::Upsert { cols, values }
}

/// Multi-row `INSERT … VALUES (…), (…)` of the same columns, an upsert on the key when there is one.
/// Rows are applied in order, so a later row for the same key wins, as in PostgreSQL.
pub fn upsert_rows(table: &Table, cols: &[usize], rows: &[Vec<Value>]) -> Stmt {
    let row = format!("({})", placeholders(cols.len()));
    let mut sql = format!(
        "INSERT INTO {} ({}) VALUES {}",
        quote_ident(&table.turso_name),
        column_list(table, cols),
        vec![row.as_str(); rows.len()].join(", ")
    );
    sql.push_str(&upsert_clause(table, cols));
    Stmt::new(sql, rows.iter().flatten().cloned().collect())
}

/// `DELETE … WHERE key IN (…)` (row values for composite keys).
pub fn delete_keys(table: &Table, keys: &[Vec<Value>]) -> Stmt {
    let name = quote_ident(&table.turso_name);
    let args = keys.iter().flatten().cloned().collect();
    if keys.len() == 1 {
        return Stmt::new(
            format!("DELETE FROM {name} WHERE {}", key_predicate(table)),
            args,
        );
    }
    let target = key_target(table);
    let sql = if table.key.len() == 1 {
        format!(
            "DELETE FROM {name} WHERE {target} IN ({})",
            placeholders(keys.len())
        )
    } else {
        let row = format!("({})", placeholders(table.key.len()));
        format!(
            "DELETE FROM {name} WHERE {target} IN (VALUES {})",
            vec![row.as_str(); keys.len()].join(", ")
        )
    };
    Stmt::new(sql, args)
}

/// Matches one row on every old value, NULL-safe (`IS`), for REPLICA IDENTITY FULL without a key.
pub(super) fn full_row_match(
    table: &Table,
    old: &[Cell],
) -> Result<(String, Vec<Value>), StmtError> {
    let rowid = rowid_alias(table)?;
    let cols = present(old);
    let preds: Vec<String> = cols
        .iter()
        .map(|&i| format!("{} IS ?", quote_ident(&table.columns[i].name)))
        .collect();
    let name = quote_ident(&table.turso_name);
    let sql = format!(
        "{rowid} = (SELECT {rowid} FROM {name} WHERE {} LIMIT 1)",
        if preds.is_empty() {
            "1".to_string()
        } else {
            preds.join(" AND ")
        }
    );
    Ok((sql, cols.iter().map(|&i| value(old, i)).collect()))
}

pub(super) fn no_identity(table: &Table, op: &str) -> StmtError {
    StmtError::NoReplicaIdentity {
        table: table.display_name(),
        quoted: super::quoted_pg_name(table),
        operation: op.to_string(),
    }
}

/// A name for SQLite's row id that no column of `table` shadows (a column may be named `rowid`).
pub(super) fn rowid_alias(table: &Table) -> Result<&'static str, StmtError> {
    ["rowid", "_rowid_", "oid"]
        .into_iter()
        .find(|alias| {
            !table
                .columns
                .iter()
                .any(|c| c.name.eq_ignore_ascii_case(alias))
        })
        .ok_or_else(|| StmtError::SchemaChange {
            table: table.display_name(),
            what: "its columns named rowid, _rowid_ and oid hide SQLite's row id, which a table without key needs".into(),
        })
}

pub(super) fn update(table: &Table, old: Option<&[Cell]>, new: Vec<Cell>) -> Result<Op, StmtError> {
    if !table.key.is_empty() {
        let new_key = key_values(table, &new).ok_or_else(|| no_identity(table, "UPDATE"))?;
        let old_key = match old {
            Some(old) => key_values(table, old).unwrap_or_else(|| new_key.clone()),
            None => new_key.clone(),
        };
        if old_key == new_key {
            return Ok(upsert_op(new));
        }
        // The key changed: move the row, keeping columns PostgreSQL did not send (unchanged TOAST).
        let cols = present(&new);
        let (set, mut args) = set_clause(table, &cols, &new);
        args.extend(old_key);
        return Ok(Op::Single(Stmt::new(
            format!(
                "UPDATE {} SET {set} WHERE {}",
                quote_ident(&table.turso_name),
                key_predicate(table)
            ),
            args,
        )));
    }
    match old {
        Some(old) if table.identity_full => {
            let cols = present(&new);
            let (set, mut args) = set_clause(table, &cols, &new);
            let (pred, pred_args) = full_row_match(table, old)?;
            args.extend(pred_args);
            Ok(Op::Single(Stmt::new(
                format!(
                    "UPDATE {} SET {set} WHERE {pred}",
                    quote_ident(&table.turso_name)
                ),
                args,
            )))
        }
        _ => Err(no_identity(table, "UPDATE")),
    }
}

pub(super) fn set_clause(table: &Table, cols: &[usize], new: &[Cell]) -> (String, Vec<Value>) {
    let set = cols
        .iter()
        .map(|&i| format!("{} = ?", quote_ident(&table.columns[i].name)))
        .collect::<Vec<_>>()
        .join(", ");
    (set, cols.iter().map(|&i| value(new, i)).collect())
}

pub(super) fn delete(table: &Table, old: Option<&[Cell]>) -> Result<Op, StmtError> {
    let old = old.ok_or_else(|| no_identity(table, "DELETE"))?;
    let name = quote_ident(&table.turso_name);
    if !table.key.is_empty() {
        if let Some(key) = key_values(table, old) {
            return Ok(Op::DeleteKey { key });
        }
        // A NULL in the key (a materialized view's unique index allows them, and then does not
        // identify the row): every row with that key, NULL-safe.
        let key: Option<Vec<Value>> = table
            .key
            .iter()
            .map(|&i| match old.get(i) {
                Some(Cell::Value(v)) => Some(v.clone()),
                _ => None,
            })
            .collect();
        let key = key.ok_or_else(|| no_identity(table, "DELETE"))?;
        let pred = table
            .key
            .iter()
            .map(|&i| format!("{} IS ?", quote_ident(&table.columns[i].name)))
            .collect::<Vec<_>>()
            .join(" AND ");
        return Ok(Op::Single(Stmt::new(
            format!("DELETE FROM {name} WHERE {pred}"),
            key,
        )));
    }
    if !table.identity_full {
        return Err(no_identity(table, "DELETE"));
    }
    let (pred, args) = full_row_match(table, old)?;
    Ok(Op::Single(Stmt::new(
        format!("DELETE FROM {name} WHERE {pred}"),
        args,
    )))
}
