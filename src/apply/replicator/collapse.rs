//! Row collapse: the row changes by key of a Turso transaction (in group commit, of many source
//! transactions) wait in a [`Window`] until a statement of another kind, a request or the commit
//! needs them, and successive changes of one row there become one: an upsert followed by
//! upserts of the same key is one upsert of the final values (columns an UPDATE left out, its
//! unchanged TOASTed values, keep the earlier upsert's value), a delete wins over what came
//! before it, and an insert of every column after a delete replaces it. A hot row (pgbench's
//! branches and tellers) then costs one statement row per request instead of one per change.
//!
//! Reordering is safe because Turso's tables have no constraint but their key and no triggers:
//! changes of different keys, and of different tables, commute. Everything else (schema
//! changes, truncates, key moves, keyless updates and deletes) is a statement of its own that
//! drains the window first, so it sees every change before it applied.

use super::*;

/// One row change by key, before it becomes part of a statement.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum RowOp {
    /// Upsert (a plain insert for a keyless table) of the columns `cols` with `values`.
    Upsert {
        cols: Vec<usize>,
        values: Vec<Value>,
    },
    /// Delete by the key's values.
    Delete { key: Vec<Value> },
}

/// A key value compared as SQLite compares it in the key (-0.0 as 0.0).
#[derive(PartialEq, Eq, Hash, Clone, Debug)]
enum KeyPart {
    Null,
    Int(i64),
    Float(u64),
    Text(String),
    Blob(Vec<u8>),
}

fn key_part(v: &Value) -> KeyPart {
    match v {
        Value::Null => KeyPart::Null,
        Value::Integer(n) => KeyPart::Int(*n),
        Value::Float(f) => KeyPart::Float((f + 0.0).to_bits()),
        Value::Text(t) => KeyPart::Text(t.clone()),
        Value::Blob(b) => KeyPart::Blob(b.clone()),
    }
}

/// The rows of one table (one Turso shape) in the window.
struct TableRows {
    table: Table,
    /// Key → index into `ops` (keyed tables only).
    index: HashMap<Vec<KeyPart>, usize>,
    ops: Vec<RowOp>,
}

impl TableRows {
    /// The key of `op`'s row; `None` for a keyless table's row, and for a key with a NULL (a
    /// materialized view's unique index may have them): NULLs are distinct in SQLite's keys as
    /// in PostgreSQL's unique indexes, so such a row collapses with no other.
    fn key(&self, op: &RowOp) -> Option<Vec<KeyPart>> {
        if self.table.key.is_empty() {
            return None;
        }
        let key: Vec<KeyPart> = match op {
            RowOp::Delete { key } => key.iter().map(key_part).collect(),
            RowOp::Upsert { cols, values } => self
                .table
                .key
                .iter()
                .map(|k| {
                    cols.iter()
                        .position(|c| c == k)
                        .map_or(KeyPart::Null, |p| key_part(&values[p]))
                })
                .collect(),
        };
        (!key.contains(&KeyPart::Null)).then_some(key)
    }
}

/// The final effect of `prev` then `next` on one row, or `None` when no single change has it.
fn merge(table: &Table, prev: &RowOp, next: RowOp) -> Result<RowOp, RowOp> {
    match (prev, next) {
        (_, next @ RowOp::Delete { .. }) => Ok(next),
        (
            RowOp::Upsert {
                cols: c1,
                values: v1,
            },
            RowOp::Upsert { cols, values },
        ) => {
            if c1.iter().all(|c| cols.contains(c)) {
                return Ok(RowOp::Upsert { cols, values });
            }
            // The later change left columns out (unchanged TOAST): they keep the earlier value.
            let mut merged: Vec<(usize, Value)> = c1.iter().copied().zip(v1.clone()).collect();
            for (c, v) in cols.into_iter().zip(values) {
                match merged.iter_mut().find(|(m, _)| *m == c) {
                    Some(slot) => slot.1 = v,
                    None => merged.push((c, v)),
                }
            }
            merged.sort_by_key(|(c, _)| *c);
            let (cols, values) = merged.into_iter().unzip();
            Ok(RowOp::Upsert { cols, values })
        }
        // An insert of every column after a delete: the upsert alone leaves the same row.
        (RowOp::Delete { .. }, RowOp::Upsert { cols, values })
            if cols.len() == table.columns.len() =>
        {
            Ok(RowOp::Upsert { cols, values })
        }
        (_, next) => Err(next),
    }
}

/// Row changes by key waiting to become statements (see the module documentation).
#[derive(Default)]
pub(super) struct Window {
    tables: Vec<TableRows>,
}

impl Window {
    /// Adds `op` of `table`. `Ok(true)`: a new row; `Ok(false)`: collapsed into a row already
    /// here; `Err(op)`: it cannot be collapsed with what is here (drain the window, add again).
    pub(super) fn add(&mut self, table: &Table, op: RowOp) -> Result<bool, RowOp> {
        // The shape (set by `ensure_table` before any row) names the statements rows go into.
        let pos = self
            .tables
            .iter()
            .position(|t| t.table.turso_name == table.turso_name && t.table.shape == table.shape);
        let rows = match pos {
            Some(p) => &mut self.tables[p],
            None => {
                self.tables.push(TableRows {
                    table: table.clone(),
                    index: HashMap::new(),
                    ops: Vec::new(),
                });
                self.tables.last_mut().expect("just pushed")
            }
        };
        let Some(key) = rows.key(&op) else {
            rows.ops.push(op);
            return Ok(true);
        };
        match rows.index.get(&key) {
            Some(&i) => {
                rows.ops[i] = merge(&rows.table, &rows.ops[i], op)?;
                Ok(false)
            }
            None => {
                rows.index.insert(key, rows.ops.len());
                rows.ops.push(op);
                Ok(true)
            }
        }
    }

    /// Takes every row out: table by table in the order they came, each with its rows, deletes
    /// before upserts (each key is here once, so their order does not matter).
    pub(super) fn drain(&mut self) -> Vec<(Table, Vec<RowOp>)> {
        std::mem::take(&mut self.tables)
            .into_iter()
            .map(|rows| {
                let (mut ops, upserts): (Vec<RowOp>, Vec<RowOp>) = rows
                    .ops
                    .into_iter()
                    .partition(|op| matches!(op, RowOp::Delete { .. }));
                ops.extend(upserts);
                (rows.table, ops)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Column, SqlType};

    fn table(key: &[usize]) -> Table {
        let col = |name: &str| Column {
            name: name.into(),
            sql_type: SqlType::Integer,
            not_null: false,
            attnum: 1,
            missing: None,
        };
        let t = Table {
            source: "1.2".into(),
            pg_schema: "public".into(),
            pg_name: "t".into(),
            turso_name: "t".into(),
            columns: vec![col("id"), col("a"), col("b")],
            key: key.to_vec(),
            key_is_primary: true,
            identity_full: false,
            shape: Default::default(),
        };
        t.shape.set("shape".into()).unwrap();
        t
    }

    fn up(cols: &[usize], values: &[i64]) -> RowOp {
        RowOp::Upsert {
            cols: cols.to_vec(),
            values: values.iter().map(|v| Value::Integer(*v)).collect(),
        }
    }

    fn del(id: i64) -> RowOp {
        RowOp::Delete {
            key: vec![Value::Integer(id)],
        }
    }

    #[test]
    fn successive_changes_of_a_row_become_its_final_state() {
        let t = table(&[0]);
        let mut w = Window::default();
        assert_eq!(w.add(&t, up(&[0, 1, 2], &[1, 10, 20])), Ok(true));
        assert_eq!(w.add(&t, up(&[0, 1, 2], &[2, 1, 1])), Ok(true));
        assert_eq!(w.add(&t, up(&[0, 1, 2], &[1, 11, 21])), Ok(false));
        // An UPDATE that left column 2 out (unchanged TOAST) keeps the earlier value of it.
        assert_eq!(w.add(&t, up(&[0, 1], &[1, 12])), Ok(false));
        assert_eq!(w.add(&t, del(2)), Ok(false));
        assert_eq!(
            w.drain(),
            vec![(t.clone(), vec![del(2), up(&[0, 1, 2], &[1, 12, 21])])]
        );
        assert!(w.drain().is_empty());
    }

    #[test]
    fn a_delete_then_a_whole_insert_is_the_insert_and_a_partial_one_is_refused() {
        let t = table(&[0]);
        let mut w = Window::default();
        w.add(&t, del(1)).unwrap();
        assert_eq!(w.add(&t, up(&[0, 1, 2], &[1, 5, 6])), Ok(false));
        w.add(&t, del(3)).unwrap();
        // Columns left out after a delete would be NULL in PostgreSQL, not the old values.
        assert_eq!(w.add(&t, up(&[0, 1], &[3, 7])), Err(up(&[0, 1], &[3, 7])));
        assert_eq!(
            w.drain(),
            vec![(t.clone(), vec![del(3), up(&[0, 1, 2], &[1, 5, 6])])]
        );
    }

    #[test]
    fn keyless_rows_all_stay_in_order_and_tables_keep_theirs() {
        let keyless = table(&[]);
        let mut other = table(&[0]);
        other.turso_name = "u".into();
        let mut w = Window::default();
        assert_eq!(w.add(&keyless, up(&[0, 1, 2], &[1, 1, 1])), Ok(true));
        assert_eq!(w.add(&other, up(&[0, 1, 2], &[1, 1, 1])), Ok(true));
        assert_eq!(w.add(&keyless, up(&[0, 1, 2], &[1, 1, 1])), Ok(true));
        let drained: Vec<(String, usize)> = w
            .drain()
            .into_iter()
            .map(|(t, ops)| (t.turso_name, ops.len()))
            .collect();
        assert_eq!(drained, [("t".into(), 2), ("u".into(), 1)]);
    }

    #[test]
    fn rows_with_a_null_in_their_key_never_collapse() {
        let t = table(&[0, 1]);
        let mut w = Window::default();
        let null_key = |v: i64| RowOp::Upsert {
            cols: vec![0, 1, 2],
            values: vec![Value::Integer(1), Value::Null, Value::Integer(v)],
        };
        assert_eq!(w.add(&t, null_key(1)), Ok(true));
        assert_eq!(w.add(&t, null_key(2)), Ok(true));
        assert_eq!(w.drain()[0].1.len(), 2);
    }

    #[test]
    fn float_keys_compare_as_sqlite_does() {
        let t = table(&[0]);
        let mut w = Window::default();
        let f = |x: f64| RowOp::Upsert {
            cols: vec![0],
            values: vec![Value::Float(x)],
        };
        assert_eq!(w.add(&t, f(0.0)), Ok(true));
        assert_eq!(w.add(&t, f(-0.0)), Ok(false));
        assert_eq!(w.add(&t, f(1.0)), Ok(true));
    }
}
