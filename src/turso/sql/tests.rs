//! Unit tests of the statements: SQL text, arguments, and what cannot be followed.

use super::*;
use super::{ddl::*, dml::*, json::*};
use crate::model::{Column, RowChange, SqlType};

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
fn type_and_key_changes_rebuild_the_table() {
    let (known, mut t) = known_and_table();
    // attnum 2 ("v", TEXT) becomes INTEGER; attnum 3 is renamed; a column with a default is added.
    t.columns[1].sql_type = SqlType::Integer;
    t.columns[2].name = "renamed".into();
    t.columns.push(Column {
        name: "added".into(),
        sql_type: SqlType::Text,
        not_null: false,
        attnum: 4,
        missing: Some(Value::Text("d".into())),
    });
    let stmts = alter_table(&known, &t).unwrap();
    let sqls: Vec<&str> = stmts.iter().map(|s| s.sql.as_str()).collect();
    assert_eq!(
        sqls,
        [
            "DROP TABLE IF EXISTS \"_pgturso_rebuild\"",
            "CREATE TABLE \"_pgturso_rebuild\" (\"id\" INTEGER NOT NULL, \"v\" INTEGER, \"renamed\" REAL, \"added\" TEXT, PRIMARY KEY (\"id\"))",
            "INSERT INTO \"_pgturso_rebuild\" (\"id\", \"v\", \"renamed\", \"added\") SELECT \"id\", CAST(\"v\" AS INTEGER), \"we\"\"ird\", ? FROM \"t\"",
            "DROP TABLE \"t\"",
            "ALTER TABLE \"_pgturso_rebuild\" RENAME TO \"t\"",
        ]
    );
    assert_eq!(stmts[2].args, vec![Value::Text("d".into())]);
    // A new key (here: none becomes the second column) rebuilds too, under a new name if renamed.
    let (known, mut t) = known_and_table();
    t.key = vec![1];
    t.turso_name = "t2".into();
    let sqls: Vec<String> = alter_table(&known, &t)
        .unwrap()
        .into_iter()
        .map(|s| s.sql)
        .collect();
    assert!(sqls[1].ends_with("PRIMARY KEY (\"v\"))"), "{}", sqls[1]);
    assert_eq!(sqls[3], "DROP TABLE \"t\"");
    assert_eq!(sqls[4], "ALTER TABLE \"_pgturso_rebuild\" RENAME TO \"t2\"");
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

#[test]
fn a_keyless_full_identity_table_gets_an_index_over_all_columns() {
    let mut t = table(vec![], true);
    for (i, c) in t.columns.iter_mut().enumerate() {
        c.attnum = i as i16 + 1;
    }
    let sqls: Vec<String> = create_table_and_index(&t)
        .into_iter()
        .map(|s| s.sql)
        .collect();
    assert_eq!(
        sqls[1],
        "CREATE INDEX IF NOT EXISTS \"_pgturso_identity_t\" ON \"t\" (\"id\", \"v\", \"we\"\"ird\")"
    );
    // Without REPLICA IDENTITY FULL, or with a key, no index.
    assert_eq!(create_table_and_index(&table(vec![], false)).len(), 1);
    assert_eq!(create_table_and_index(&table(vec![0], true)).len(), 1);
    // SQLite cannot drop an indexed column: any change rebuilds, and the index comes back.
    let known = KnownTable::of(&t);
    assert_eq!(known.identity, [1, 2, 3]);
    t.columns.pop();
    let sqls: Vec<String> = alter_table(&known, &t)
        .unwrap()
        .into_iter()
        .map(|s| s.sql)
        .collect();
    assert!(sqls[0].contains("_pgturso_rebuild"), "{sqls:?}");
    assert_eq!(
        sqls.last().unwrap(),
        "CREATE INDEX IF NOT EXISTS \"_pgturso_identity_t\" ON \"t\" (\"id\", \"v\")"
    );
    // Shapes recorded before identity indexes existed read back without one.
    let old: KnownTable =
        serde_json::from_str(r#"{"turso_name":"t","key":[],"columns":[[1,"id","INTEGER"]]}"#)
            .unwrap();
    assert!(old.identity.is_empty());
}
