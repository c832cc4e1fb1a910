//! Many rows in one statement: the rows as one JSON text argument, unpacked by SQLite's `json_each`.

use super::*;
use crate::model::{Table, Value};

/// The probe that tells whether the server can read [`upsert_rows_json`] and
/// [`delete_keys_json`] statements: JSON operators (SQLite 3.38), `unhex` (3.41) and `power`.
pub const JSON_ROWS_PROBE: &str = "SELECT '[1]' ->> 0, unhex('00'), power(2.0, -1074)";

// What kinds of values a column of a JSON row array holds (NULL fits every kind).
pub(super) const PLAIN: u8 = 1;
pub(super) const FLOAT: u8 = 2;
pub(super) const BLOB: u8 = 4;

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
pub(super) fn flat_keys_json(keys: &[Vec<Value>]) -> Option<String> {
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
pub(super) fn write_json_value(out: &mut Vec<u8>, int: &mut itoa::Buffer, v: &Value) -> u8 {
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
pub(super) fn float_parts(f: f64) -> (i64, i32) {
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
pub(super) fn json_cell(i: usize, kinds: u8) -> String {
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
pub(super) fn json_select(kinds: &[u8]) -> String {
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
