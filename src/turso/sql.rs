//! SQLite statements for decoded changes: identifiers quoted, values always bound as arguments.
//!
//! Inserts and updates that keep the key are upserts on the key, so applying a change to a row that
//! already has that state converges instead of failing; UPDATEs that change the key move the row.

use serde::{Deserialize, Serialize};

use crate::error::PgTursoError;
use crate::model::{Cell, RowChange, SqlType, Table, Value};

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

fn column_list(table: &Table, cols: &[usize]) -> String {
    cols.iter()
        .map(|&i| quote_ident(&table.columns[i].name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `CREATE TABLE IF NOT EXISTS` with the columns in PostgreSQL order and the key.
pub fn create_table(table: &Table) -> Stmt {
    let mut parts: Vec<String> = table
        .columns
        .iter()
        .map(|c| {
            let mut def = format!("{} {}", quote_ident(&c.name), c.sql_type.as_sql());
            if c.not_null {
                def.push_str(" NOT NULL");
            }
            def
        })
        .collect();
    if !table.key.is_empty() {
        let kind = if table.key_is_primary {
            "PRIMARY KEY"
        } else {
            "UNIQUE"
        };
        parts.push(format!("{kind} ({})", column_list(table, &table.key)));
    }
    Stmt::new(
        format!(
            "CREATE TABLE IF NOT EXISTS {} ({})",
            quote_ident(&table.turso_name),
            parts.join(", ")
        ),
        vec![],
    )
}

/// What Turso has for a table, as pgturso last created or altered it (kept in `_pgturso_schema`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KnownTable {
    pub turso_name: String,
    /// Attribute numbers of the key.
    pub key: Vec<i16>,
    /// (attnum, name, declared type) in PostgreSQL order.
    pub columns: Vec<(i16, String, String)>,
}

impl KnownTable {
    pub fn of(table: &Table) -> KnownTable {
        KnownTable {
            turso_name: table.turso_name.clone(),
            key: table.key.iter().map(|&i| table.columns[i].attnum).collect(),
            columns: table
                .columns
                .iter()
                .map(|c| (c.attnum, c.name.clone(), c.sql_type.as_sql().to_string()))
                .collect(),
        }
    }
}

/// The statements that turn the Turso table `known` into the shape of `table`: RENAME TABLE,
/// DROP COLUMN, RENAME COLUMN (through temporary names, so swaps work) and ADD COLUMN (with
/// existing rows set to the column's default). Key and type changes cannot be followed.
pub fn alter_table(known: &KnownTable, table: &Table) -> Result<Vec<Stmt>, PgTursoError> {
    let cannot = |what: String| PgTursoError::SchemaChange {
        table: table.display_name(),
        what,
    };
    let wanted = KnownTable::of(table);
    if wanted.key != known.key {
        return Err(cannot("its primary key or replica identity changed".into()));
    }
    let mut out = Vec::new();
    let name = quote_ident(&table.turso_name);
    if known.turso_name != table.turso_name {
        out.push(Stmt::new(
            format!(
                "ALTER TABLE {} RENAME TO {name}",
                quote_ident(&known.turso_name)
            ),
            vec![],
        ));
    }
    let old = |attnum: i16| known.columns.iter().find(|c| c.0 == attnum);
    for (attnum, col, _) in &known.columns {
        if !table.columns.iter().any(|c| c.attnum == *attnum) {
            out.push(Stmt::new(
                format!("ALTER TABLE {name} DROP COLUMN {}", quote_ident(col)),
                vec![],
            ));
        }
    }
    let renamed: Vec<(&String, &String, i16)> = table
        .columns
        .iter()
        .filter_map(|c| {
            old(c.attnum)
                .filter(|o| o.1 != c.name)
                .map(|o| (&o.1, &c.name, c.attnum))
        })
        .collect();
    let tmp = |attnum: i16| quote_ident(&format!("_pgturso_renaming_{attnum}"));
    for (from, _, attnum) in &renamed {
        out.push(Stmt::new(
            format!(
                "ALTER TABLE {name} RENAME COLUMN {} TO {}",
                quote_ident(from),
                tmp(*attnum)
            ),
            vec![],
        ));
    }
    for (_, to, attnum) in &renamed {
        out.push(Stmt::new(
            format!(
                "ALTER TABLE {name} RENAME COLUMN {} TO {}",
                tmp(*attnum),
                quote_ident(to)
            ),
            vec![],
        ));
    }
    for c in &table.columns {
        match old(c.attnum) {
            Some((_, _, ty)) if SqlType::from_sql(ty) != Some(c.sql_type) => {
                return Err(cannot(format!(
                    "column \"{}\" changed from {ty} to {}",
                    c.name,
                    c.sql_type.as_sql()
                )));
            }
            Some(_) => {}
            None => {
                let col = quote_ident(&c.name);
                out.push(Stmt::new(
                    format!(
                        "ALTER TABLE {name} ADD COLUMN {col} {}",
                        c.sql_type.as_sql()
                    ),
                    vec![],
                ));
                if let Some(v) = c.missing.clone().filter(|v| *v != Value::Null) {
                    out.push(Stmt::new(format!("UPDATE {name} SET {col} = ?"), vec![v]));
                }
            }
        }
    }
    Ok(out)
}

/// TRUNCATE empties the Turso table.
pub fn truncate(table: &Table) -> Stmt {
    Stmt::new(
        format!("DELETE FROM {}", quote_ident(&table.turso_name)),
        vec![],
    )
}

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
pub fn row_change(table: &Table, change: RowChange) -> Result<Stmt, PgTursoError> {
    Ok(match row_op(table, change)? {
        Op::Upsert { cols, values } => upsert_rows(table, &cols, &[values]),
        Op::DeleteKey { key } => delete_keys(table, &[key]),
        Op::Single(stmt) => stmt,
    })
}

/// One row change as an [`Op`] (its values move into it).
pub fn row_op(table: &Table, change: RowChange) -> Result<Op, PgTursoError> {
    match change {
        RowChange::Insert { new } => Ok(upsert_op(new)),
        RowChange::Update { old, new } => update(table, old.as_deref(), new),
        RowChange::Delete { old } => delete(table, old.as_deref()),
    }
}

fn upsert_op(new: Vec<Cell>) -> Op {
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

/// The probe that tells whether the server can read [`upsert_rows_json`] and
/// [`delete_keys_json`] statements: JSON operators (SQLite 3.38), `unhex` (3.41) and `power`.
pub const JSON_ROWS_PROBE: &str = "SELECT '[1]' ->> 0, unhex('00'), power(2.0, -1074)";

// What kinds of values a column of a JSON row array holds (NULL fits every kind).
const PLAIN: u8 = 1;
const FLOAT: u8 = 2;
const BLOB: u8 = 4;

/// Rows as ONE JSON array argument, for `json_each(?)`: sqld and SQLite then parse a short
/// statement instead of one placeholder per value, which is most of what a large multi-row
/// statement costs them (see bench/README.md). Every value stays exact: NULL, integers and text
/// are JSON null, numbers and strings; a float is `[m, e]` with `m * 2^e` equal to it (SQLite's
/// decimal-to-float parsing is not always correctly rounded, `power(2.0, e)` and the product
/// are exact); a blob is `{"b": hex}`. Returns the JSON and, per column, the kinds it holds.
pub fn rows_json(rows: &[Vec<Value>]) -> (String, Vec<u8>) {
    let width = rows.first().map_or(0, Vec::len);
    let mut kinds = vec![0u8; width];
    let mut out: Vec<u8> =
        Vec::with_capacity(rows.iter().flatten().map(Value::estimated_size).sum());
    let mut int = itoa::Buffer::new();
    out.push(b'[');
    for (r, row) in rows.iter().enumerate() {
        if r > 0 {
            out.push(b',');
        }
        out.push(b'[');
        for (i, v) in row.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            let kind = write_json_value(&mut out, &mut int, v);
            if let Some(k) = kinds.get_mut(i) {
                *k |= kind;
            }
        }
        out.push(b']');
    }
    out.push(b']');
    (
        String::from_utf8(out).expect("JSON of valid strings is UTF-8"),
        kinds,
    )
}

/// Single-column keys as ONE flat JSON array (`[k, k, …]`) for `SELECT value FROM json_each(?)`,
/// when every key is NULL, an integer or text (the kinds JSON holds as scalars); `None` when a
/// float or a blob needs the `[m, e]` / `{"b": …}` forms of [`rows_json`]. json_each returns a
/// scalar element as it is, with no per-row JSON text to make and parse again: a 20,000-key
/// delete costs sqld 36% fewer instructions than with one-element rows (callgrind).
fn flat_keys_json(keys: &[Vec<Value>]) -> Option<String> {
    if !keys.iter().all(|k| {
        matches!(
            k.as_slice(),
            [Value::Null | Value::Integer(_) | Value::Text(_)]
        )
    }) {
        return None;
    }
    let mut out: Vec<u8> =
        Vec::with_capacity(keys.iter().flatten().map(Value::estimated_size).sum());
    let mut int = itoa::Buffer::new();
    out.push(b'[');
    for (r, key) in keys.iter().enumerate() {
        if r > 0 {
            out.push(b',');
        }
        write_json_value(&mut out, &mut int, &key[0]);
    }
    out.push(b']');
    Some(String::from_utf8(out).expect("JSON of valid strings is UTF-8"))
}

/// Writes one value in the JSON-rows encoding ([`rows_json`]); returns its kind (0 for NULL).
fn write_json_value(out: &mut Vec<u8>, int: &mut itoa::Buffer, v: &Value) -> u8 {
    match v {
        Value::Null => {
            out.extend_from_slice(b"null");
            0
        }
        Value::Integer(n) => {
            out.extend_from_slice(int.format(*n).as_bytes());
            PLAIN
        }
        Value::Text(t) => {
            serde_json::to_writer(&mut *out, t).expect("a string serializes");
            PLAIN
        }
        Value::Float(f) => {
            let (m, e) = float_parts(*f);
            out.push(b'[');
            if m == 0 && f.is_sign_negative() {
                out.extend_from_slice(b"-0.0");
            } else {
                out.extend_from_slice(int.format(m).as_bytes());
            }
            out.push(b',');
            out.extend_from_slice(int.format(e).as_bytes());
            out.push(b']');
            FLOAT
        }
        Value::Blob(b) => {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"{\"b\":\"");
            for byte in b {
                out.push(HEX[(byte >> 4) as usize]);
                out.push(HEX[(byte & 15) as usize]);
            }
            out.extend_from_slice(b"\"}");
            BLOB
        }
    }
}

/// `(m, e)` with `m * 2^e == f` exactly, `m` odd (or 0), `|m| < 2^53` and `e` in `-1074..=1023`
/// (f finite; `power(2.0, e)` is exact over that whole range).
fn float_parts(f: f64) -> (i64, i32) {
    let bits = f.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i32;
    let frac = (bits & ((1u64 << 52) - 1)) as i64;
    let (mut m, mut e) = if exp == 0 {
        (frac, -1074)
    } else {
        (frac | (1i64 << 52), exp - 1075)
    };
    if m == 0 {
        return (0, 0);
    }
    let tz = m.trailing_zeros();
    m >>= tz;
    e += tz as i32;
    if f.is_sign_negative() {
        m = -m;
    }
    (m, e)
}

/// The SQL expression that reads column `i` of a row `r.j` (the JSON text of one row) holding
/// values of `kinds`.
fn json_cell(i: usize, kinds: u8) -> String {
    let plain = format!("r.j ->> {i}");
    let float = format!("(r.j ->> '$[{i}][0]') * power(2.0, r.j ->> '$[{i}][1]')");
    let blob = format!("unhex(r.j ->> '$[{i}].b')");
    match kinds {
        0 | PLAIN => plain,
        FLOAT => float,
        BLOB => blob,
        _ => format!(
            "CASE json_type(r.j, '$[{i}]') WHEN 'array' THEN {float} WHEN 'object' THEN {blob} ELSE {plain} END"
        ),
    }
}

/// `SELECT <cells> FROM (SELECT value AS j FROM json_each(?) LIMIT -1 OFFSET 0) AS r`. The
/// OFFSET keeps SQLite from flattening the subquery into the outer SELECT, so it runs as a
/// co-routine that produces each row's JSON text once; flattened, every cell would read
/// json_each's `value` again, and each read turns the row back into JSON text (about 30% more
/// instructions in sqld for a 4-column upsert, measured with callgrind: bench/README.md).
fn json_select(kinds: &[u8]) -> String {
    let cells: Vec<String> = kinds
        .iter()
        .enumerate()
        .map(|(i, &k)| json_cell(i, k))
        .collect();
    format!(
        "SELECT {} FROM (SELECT value AS j FROM json_each(?) LIMIT -1 OFFSET 0) AS r",
        cells.join(", ")
    )
}

/// [`upsert_rows`] with the rows in one JSON argument ([`rows_json`]). The rows must have
/// distinct keys (the replicator starts a new statement when a key comes again): SQLite does not
/// promise to insert them in array order, and without a repeated key the order cannot matter.
/// (`WHERE true` is SQLite's required disambiguation of `INSERT … SELECT … ON CONFLICT`.)
pub fn upsert_rows_json(table: &Table, cols: &[usize], rows: &[Vec<Value>]) -> Stmt {
    let (json, kinds) = rows_json(rows);
    let mut sql = format!(
        "INSERT INTO {} ({}) {} WHERE true",
        quote_ident(&table.turso_name),
        column_list(table, cols),
        json_select(&kinds)
    );
    sql.push_str(&upsert_clause(table, cols));
    Stmt::new(sql, vec![Value::Text(json)])
}

/// [`delete_keys`] with the keys in one JSON argument: a flat array for a single-column key of
/// integers and text ([`flat_keys_json`]), otherwise rows ([`rows_json`]).
pub fn delete_keys_json(table: &Table, keys: &[Vec<Value>]) -> Stmt {
    if table.key.len() == 1 {
        if let Some(json) = flat_keys_json(keys) {
            return Stmt::new(
                format!(
                    "DELETE FROM {} WHERE {} IN (SELECT value FROM json_each(?))",
                    quote_ident(&table.turso_name),
                    key_target(table)
                ),
                vec![Value::Text(json)],
            );
        }
    }
    let (json, kinds) = rows_json(keys);
    Stmt::new(
        format!(
            "DELETE FROM {} WHERE {} IN ({})",
            quote_ident(&table.turso_name),
            key_target(table),
            json_select(&kinds)
        ),
        vec![Value::Text(json)],
    )
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

/// Matches one row on every old value, NULL-safe (`IS`), for REPLICA IDENTITY FULL without a key.
fn full_row_match(table: &Table, old: &[Cell]) -> Result<(String, Vec<Value>), PgTursoError> {
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

fn no_identity(table: &Table, op: &str) -> PgTursoError {
    PgTursoError::NoReplicaIdentity {
        table: table.display_name(),
        quoted: format!(
            "{}.{}",
            quote_ident(&table.pg_schema),
            quote_ident(&table.pg_name)
        ),
        operation: op.to_string(),
    }
}

/// A name for SQLite's row id that no column of `table` shadows (a column may be named `rowid`).
fn rowid_alias(table: &Table) -> Result<&'static str, PgTursoError> {
    ["rowid", "_rowid_", "oid"]
        .into_iter()
        .find(|alias| {
            !table
                .columns
                .iter()
                .any(|c| c.name.eq_ignore_ascii_case(alias))
        })
        .ok_or_else(|| PgTursoError::SchemaChange {
            table: table.display_name(),
            what: "its columns named rowid, _rowid_ and oid hide SQLite's row id, which a table without key needs".into(),
        })
}

fn update(table: &Table, old: Option<&[Cell]>, new: Vec<Cell>) -> Result<Op, PgTursoError> {
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

fn set_clause(table: &Table, cols: &[usize], new: &[Cell]) -> (String, Vec<Value>) {
    let set = cols
        .iter()
        .map(|&i| format!("{} = ?", quote_ident(&table.columns[i].name)))
        .collect::<Vec<_>>()
        .join(", ");
    (set, cols.iter().map(|&i| value(new, i)).collect())
}

fn delete(table: &Table, old: Option<&[Cell]>) -> Result<Op, PgTursoError> {
    let old = old.ok_or_else(|| no_identity(table, "DELETE"))?;
    let name = quote_ident(&table.turso_name);
    if !table.key.is_empty() {
        let key = key_values(table, old).ok_or_else(|| no_identity(table, "DELETE"))?;
        return Ok(Op::DeleteKey { key });
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Column, SqlType};

    fn col(name: &str, t: SqlType, nn: bool) -> Column {
        Column {
            name: name.into(),
            sql_type: t,
            not_null: nn,
            attnum: 0,
            missing: None,
        }
    }

    fn table(key: Vec<usize>, full: bool) -> Table {
        Table {
            source: "1.1".into(),
            pg_schema: "public".into(),
            pg_name: "t".into(),
            turso_name: "t".into(),
            columns: vec![
                col("id", SqlType::Integer, true),
                col("v", SqlType::Text, false),
                col("we\"ird", SqlType::Real, false),
            ],
            key,
            key_is_primary: true,
            identity_full: full,
            shape: Default::default(),
        }
    }

    fn v(x: Value) -> Cell {
        Cell::Value(x)
    }

    #[test]
    fn create_table_quotes_and_keys() {
        let s = create_table(&table(vec![0], false));
        assert_eq!(
            s.sql,
            "CREATE TABLE IF NOT EXISTS \"t\" (\"id\" INTEGER NOT NULL, \"v\" TEXT, \"we\"\"ird\" REAL, PRIMARY KEY (\"id\"))"
        );
        assert!(s.args.is_empty());
    }

    #[test]
    fn insert_is_upsert_with_bound_values() {
        let row = vec![
            v(Value::Integer(1)),
            v(Value::Text("'; DROP TABLE t; --".into())),
            v(Value::Null),
        ];
        let s = row_change(&table(vec![0], false), RowChange::Insert { new: row }).unwrap();
        assert_eq!(
            s.sql,
            "INSERT INTO \"t\" (\"id\", \"v\", \"we\"\"ird\") VALUES (?, ?, ?) ON CONFLICT (\"id\") DO UPDATE SET \"v\" = excluded.\"v\", \"we\"\"ird\" = excluded.\"we\"\"ird\""
        );
        assert_eq!(s.args[1], Value::Text("'; DROP TABLE t; --".into()));
    }

    #[test]
    fn insert_without_key_is_plain() {
        let row = vec![v(Value::Integer(1)), v(Value::Null), v(Value::Float(1.5))];
        let s = row_change(&table(vec![], true), RowChange::Insert { new: row }).unwrap();
        assert_eq!(
            s.sql,
            "INSERT INTO \"t\" (\"id\", \"v\", \"we\"\"ird\") VALUES (?, ?, ?)"
        );
    }

    #[test]
    fn update_skips_unchanged_toast() {
        let new = vec![
            v(Value::Integer(1)),
            Cell::UnchangedToast,
            v(Value::Float(2.0)),
        ];
        let s = row_change(&table(vec![0], false), RowChange::Update { old: None, new }).unwrap();
        assert_eq!(
            s.sql,
            "INSERT INTO \"t\" (\"id\", \"we\"\"ird\") VALUES (?, ?) ON CONFLICT (\"id\") DO UPDATE SET \"we\"\"ird\" = excluded.\"we\"\"ird\""
        );
    }

    #[test]
    fn key_change_moves_the_row() {
        let old = vec![v(Value::Integer(1)), v(Value::Null), v(Value::Null)];
        let new = vec![
            v(Value::Integer(2)),
            v(Value::Text("x".into())),
            v(Value::Null),
        ];
        let s = row_change(
            &table(vec![0], false),
            RowChange::Update {
                old: Some(old),
                new,
            },
        )
        .unwrap();
        assert_eq!(
            s.sql,
            "UPDATE \"t\" SET \"id\" = ?, \"v\" = ?, \"we\"\"ird\" = ? WHERE \"id\" = ?"
        );
        assert_eq!(s.args.last(), Some(&Value::Integer(1)));
    }

    #[test]
    fn full_identity_matches_one_row_null_safe() {
        let old = vec![v(Value::Integer(1)), v(Value::Null), v(Value::Float(1.0))];
        let s = row_change(&table(vec![], true), RowChange::Delete { old: Some(old) }).unwrap();
        assert_eq!(
            s.sql,
            "DELETE FROM \"t\" WHERE rowid = (SELECT rowid FROM \"t\" WHERE \"id\" IS ? AND \"v\" IS ? AND \"we\"\"ird\" IS ? LIMIT 1)"
        );
        assert_eq!(s.args.len(), 3);
    }

    #[test]
    fn no_identity_is_an_error_naming_the_table() {
        let err = row_change(&table(vec![], false), RowChange::Delete { old: None }).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("\"public.t\""), "{msg}");
        let upd = RowChange::Update {
            old: None,
            new: vec![v(Value::Integer(1)), v(Value::Null), v(Value::Null)],
        };
        assert!(row_change(&table(vec![], false), upd).is_err());
    }

    #[test]
    fn multi_row_statements() {
        let t = table(vec![0], false);
        let rows = vec![
            vec![Value::Integer(1), Value::Text("a".into())],
            vec![Value::Integer(2), Value::Null],
        ];
        let s = upsert_rows(&t, &[0, 1], &rows);
        assert_eq!(
            s.sql,
            "INSERT INTO \"t\" (\"id\", \"v\") VALUES (?, ?), (?, ?) ON CONFLICT (\"id\") DO UPDATE SET \"v\" = excluded.\"v\""
        );
        assert_eq!(s.args.len(), 4);
        let d = delete_keys(&t, &[vec![Value::Integer(1)], vec![Value::Integer(2)]]);
        assert_eq!(d.sql, "DELETE FROM \"t\" WHERE \"id\" IN (?, ?)");
        let c = table(vec![0, 1], false);
        let d = delete_keys(
            &c,
            &[
                vec![Value::Integer(1), Value::Text("a".into())],
                vec![Value::Integer(2), Value::Text("b".into())],
            ],
        );
        assert_eq!(
            d.sql,
            "DELETE FROM \"t\" WHERE (\"id\", \"v\") IN (VALUES (?, ?), (?, ?))"
        );
        assert_eq!(d.args.len(), 4);
    }

    #[test]
    fn float_parts_are_exact() {
        // 2^e as a float, for e in -1074..=1023 (subnormal below -1022).
        let pow2 = |e: i32| {
            if e >= -1022 {
                f64::from_bits(((e + 1023) as u64) << 52)
            } else {
                f64::from_bits(1u64 << (e + 1074))
            }
        };
        for f in [
            0.0,
            1.0,
            3.0,
            0.5,
            -2.75,
            1.0 / 7.0,
            0.1,
            f64::MAX,
            f64::MIN,
            f64::MIN_POSITIVE,
            5e-324,
            -5e-324,
            2.225073858507201e-308,
            1.5471825031341821e-78,
            9007199254740993.0,
            8.98846567431158e307,   // 2^1023
            -1.348269851146737e308, // -3 * 2^1022
            -9.943772430956877e307, // an even mantissa near the top: e above 971
        ] {
            let (m, e) = float_parts(f);
            assert!(
                m.unsigned_abs() < 1 << 53 && (-1074..=1023).contains(&e),
                "{f}"
            );
            assert!(
                m == 0 || m % 2 != 0 || e == -1074,
                "{f}: ({m}, {e}) not reduced"
            );
            assert_eq!((m as f64 * pow2(e)).to_bits(), f.to_bits(), "{f}");
        }
        assert_eq!(float_parts(-0.0), (0, 0));
        assert_eq!(float_parts(8.98846567431158e307), (1, 1023));
    }

    #[test]
    fn rows_travel_as_one_json_argument() {
        let rows = vec![
            vec![
                Value::Integer(i64::MIN),
                Value::Text("a \"q\" \\ \n é".into()),
                Value::Float(-0.0),
                Value::Blob(vec![0, 255, 16]),
            ],
            vec![
                Value::Null,
                Value::Float(1.5),
                Value::Float(3.0),
                Value::Blob(vec![]),
            ],
        ];
        let (json, kinds) = rows_json(&rows);
        assert_eq!(
            json,
            r#"[[-9223372036854775808,"a \"q\" \\ \n é",[-0.0,0],{"b":"00ff10"}],[null,[3,-1],[3,0],{"b":""}]]"#
        );
        assert_eq!(kinds, vec![PLAIN, PLAIN | FLOAT, FLOAT, BLOB]);
        let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(parsed[0][1], "a \"q\" \\ \n é");

        let t = table(vec![0], false);
        let s = upsert_rows_json(&t, &[0, 1], &[rows[0][..2].to_vec(), rows[1][..2].to_vec()]);
        assert_eq!(
            s.sql,
            "INSERT INTO \"t\" (\"id\", \"v\") SELECT r.j ->> 0, CASE json_type(r.j, '$[1]') \
             WHEN 'array' THEN (r.j ->> '$[1][0]') * power(2.0, r.j ->> '$[1][1]') \
             WHEN 'object' THEN unhex(r.j ->> '$[1].b') ELSE r.j ->> 1 END \
             FROM (SELECT value AS j FROM json_each(?) LIMIT -1 OFFSET 0) AS r WHERE true \
             ON CONFLICT (\"id\") DO UPDATE SET \"v\" = excluded.\"v\""
        );
        assert_eq!(s.args.len(), 1);
        let c = table(vec![0, 2], false);
        let d = delete_keys_json(
            &c,
            &[
                vec![Value::Integer(1), Value::Float(0.25)],
                vec![Value::Integer(2), Value::Null],
            ],
        );
        assert_eq!(
            d.sql,
            "DELETE FROM \"t\" WHERE (\"id\", \"we\"\"ird\") IN (SELECT r.j ->> 0, \
             (r.j ->> '$[1][0]') * power(2.0, r.j ->> '$[1][1]') \
             FROM (SELECT value AS j FROM json_each(?) LIMIT -1 OFFSET 0) AS r)"
        );
        assert_eq!(d.args, vec![Value::Text("[[1,[1,-2]],[2,null]]".into())]);
    }

    #[test]
    fn single_column_keys_of_integers_and_text_travel_as_a_flat_array() {
        let t = table(vec![0], false);
        let d = delete_keys_json(
            &t,
            &[
                vec![Value::Integer(-7)],
                vec![Value::Text("a \"q\"".into())],
                vec![Value::Null],
            ],
        );
        assert_eq!(
            d.sql,
            "DELETE FROM \"t\" WHERE \"id\" IN (SELECT value FROM json_each(?))"
        );
        assert_eq!(d.args, vec![Value::Text(r#"[-7,"a \"q\"",null]"#.into())]);
        // A float or a blob among them needs the row forms.
        for odd in [Value::Float(0.5), Value::Blob(vec![1])] {
            let d = delete_keys_json(&t, &[vec![Value::Integer(1)], vec![odd]]);
            assert!(
                d.sql.contains("FROM (SELECT value AS j FROM json_each(?)"),
                "{}",
                d.sql
            );
        }
    }

    fn known_and_table() -> (KnownTable, Table) {
        let mut t = table(vec![0], false);
        for (i, c) in t.columns.iter_mut().enumerate() {
            c.attnum = i as i16 + 1;
        }
        (KnownTable::of(&t), t)
    }

    #[test]
    fn alter_follows_renames_drops_and_adds() {
        let (known, mut t) = known_and_table();
        assert!(alter_table(&known, &t).unwrap().is_empty());
        t.turso_name = "t2".into();
        t.columns.swap(1, 2); // keep attnums, swap names below
        t.columns[1].name = "v".into(); // attnum 3 was "we\"ird"
        t.columns[2].name = "we\"ird".into(); // attnum 2 was "v"
        t.columns.retain(|c| c.attnum != 3);
        t.columns.push(Column {
            name: "added".into(),
            sql_type: SqlType::Integer,
            not_null: false,
            attnum: 4,
            missing: Some(Value::Integer(7)),
        });
        let sqls: Vec<String> = alter_table(&known, &t)
            .unwrap()
            .into_iter()
            .map(|s| s.sql)
            .collect();
        assert_eq!(
            sqls,
            [
                "ALTER TABLE \"t\" RENAME TO \"t2\"",
                "ALTER TABLE \"t2\" DROP COLUMN \"we\"\"ird\"",
                "ALTER TABLE \"t2\" RENAME COLUMN \"v\" TO \"_pgturso_renaming_2\"",
                "ALTER TABLE \"t2\" RENAME COLUMN \"_pgturso_renaming_2\" TO \"we\"\"ird\"",
                "ALTER TABLE \"t2\" ADD COLUMN \"added\" INTEGER",
                "UPDATE \"t2\" SET \"added\" = ?",
            ]
        );
    }

    #[test]
    fn alter_refuses_type_and_key_changes() {
        let (known, mut t) = known_and_table();
        t.columns[1].sql_type = SqlType::Integer;
        let e = alter_table(&known, &t).unwrap_err().to_string();
        assert!(e.contains("changed from TEXT to INTEGER"), "{e}");
        let (known, mut t) = known_and_table();
        t.key = vec![1];
        assert!(alter_table(&known, &t).is_err());
    }

    #[test]
    fn a_column_named_rowid_does_not_capture_the_row_id() {
        let mut t = table(vec![], true);
        t.columns[0].name = "rowid".into();
        let old = vec![v(Value::Integer(1)), v(Value::Null), v(Value::Null)];
        let s = row_change(
            &t,
            RowChange::Delete {
                old: Some(old.clone()),
            },
        )
        .unwrap();
        assert!(
            s.sql
                .starts_with("DELETE FROM \"t\" WHERE _rowid_ = (SELECT _rowid_ FROM"),
            "{}",
            s.sql
        );
        t.columns[1].name = "_ROWID_".into();
        t.columns[2].name = "oid".into();
        assert!(row_change(&t, RowChange::Delete { old: Some(old) }).is_err());
    }

    #[test]
    fn composite_key_delete() {
        let mut t = table(vec![0, 1], false);
        t.columns[1].not_null = true;
        let old = vec![
            v(Value::Integer(1)),
            v(Value::Text("a".into())),
            v(Value::Null),
        ];
        let s = row_change(&t, RowChange::Delete { old: Some(old) }).unwrap();
        assert_eq!(s.sql, "DELETE FROM \"t\" WHERE \"id\" = ? AND \"v\" = ?");
        assert_eq!(s.args, vec![Value::Integer(1), Value::Text("a".into())]);
    }
}
