//! End-to-end tests of the type map: values are checked through SQLite's own functions
//! (strftime, json_extract, hex) against PostgreSQL's, so "SQLite reads it" is what is tested.

mod common;

use common::setup_slot as setup;

use common::{assert_same_table, get_changes, pg_rows, Sqld};
use serde_json::{json, Value as Json};

fn one(c: &mut postgres::Client, sql: &str) -> String {
    pg_rows(c, sql)[0][0].clone().unwrap_or_default()
}

#[test]
fn every_type_arrives_as_the_documented_value() {
    let sqld = Sqld::start("types", false);
    let (mut c, slot) = setup("types");
    c.batch_execute(
        "CREATE EXTENSION citext;
         CREATE TYPE mood AS ENUM ('sad', 'happy');
         CREATE DOMAIN posint AS int CHECK (VALUE > 0);
         CREATE TABLE ty(
            id int PRIMARY KEY, i2 int2, i8 int8, o oid, b bool, r4 float4, r8 float8,
            num numeric, t text, vc varchar(5), bp char(3), nm name, ci citext, m mood,
            by bytea, d date, tm time, ttz timetz, ts timestamp, tstz timestamptz,
            iv interval, u uuid, j json, jb jsonb, arr int[], arr2 text[][], d2 posint,
            inet inet, money money, gen int GENERATED ALWAYS AS (id * 10) STORED, dropme int);
         ALTER TABLE ty DROP COLUMN dropme;
         SET TimeZone = 'America/New_York';
         INSERT INTO ty VALUES
           (1, -32768, 9223372036854775807, 4294967295, true, 1.5, 0.1,
            (repeat('9', 1000) || '.' || repeat('1', 20))::numeric, 'üñí', 'abc', 'x', 'nm', 'CiTe', 'happy',
            '\\x00ff0001'::bytea, '2024-02-29', '13:14:15.5', '01:02:03+05:30',
            '2024-03-10 12:34:56.789', '2024-07-01 09:00:00-04', '1 day 02:03:04',
            'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11', '{\"a\": [1, 2, {\"b\": null}]}', '{\"k\": \"v\", \"n\": 1.5}',
            '{1,NULL,3}', '{{\"a\",\"b\"},{NULL,\"d\"}}', 7, '10.0.0.1/8', 12.34),
           (2, NULL, NULL, NULL, false, 'NaN', '-Infinity', 'NaN', NULL, NULL, NULL, NULL, NULL, NULL,
            '\\x'::bytea, 'infinity', NULL, NULL, '-infinity', 'infinity', NULL, NULL, NULL, NULL,
            '{}', NULL, NULL, NULL, NULL),
           (3, 0, -1, 0, NULL, 'Infinity', 'NaN', '-0.000001', '', NULL, NULL, NULL, NULL, NULL,
            NULL, '1999-12-31', '00:00:00', NULL, '1999-12-31 23:59:59.999999', '1970-01-01 00:00:00+00',
            NULL, NULL, 'null', '[]', NULL, NULL, NULL, NULL, NULL);",
    )
    .unwrap();
    get_changes(&mut c, &slot, &[("url", &sqld.url())]).unwrap();
    let q = |sql: &str| sqld.query(sql);
    // Integers, booleans, floats.
    assert_eq!(
        q("SELECT i2, i8, o, b, r4, r8 FROM ty WHERE id = 1"),
        vec![vec![
            json!(-32768),
            json!(9223372036854775807i64),
            json!(4294967295i64),
            json!(1),
            json!(1.5),
            json!(0.1)
        ]]
    );
    assert_eq!(
        q("SELECT b, r4, r8 FROM ty WHERE id = 2"),
        vec![vec![json!(0), json!("NaN"), json!("-Infinity")]]
    );
    assert_eq!(
        q("SELECT r4, r8 FROM ty WHERE id = 3"),
        vec![vec![json!("Infinity"), json!("NaN")]]
    );
    // numeric is the exact decimal text.
    let num = one(&mut c, "SELECT num::text FROM ty WHERE id = 1");
    assert_eq!(num.len(), 1021);
    assert_eq!(q("SELECT num FROM ty WHERE id = 1"), vec![vec![json!(num)]]);
    assert_eq!(
        q("SELECT num FROM ty WHERE id IN (2, 3) ORDER BY id"),
        vec![vec![json!("NaN")], vec![json!("-0.000001")]]
    );
    // Text-like types, enums, domains.
    assert_eq!(
        q("SELECT t, vc, bp, nm, ci, m, d2 FROM ty WHERE id = 1"),
        vec![vec![
            json!("üñí"),
            json!("abc"),
            json!("x  "),
            json!("nm"),
            json!("CiTe"),
            json!("happy"),
            json!(7)
        ]]
    );
    // bytea: exact bytes, zero bytes included.
    assert_eq!(
        q("SELECT hex(by), length(by), typeof(by) FROM ty WHERE id = 1"),
        vec![vec![json!("00FF0001"), json!(4), json!("blob")]]
    );
    assert_eq!(
        q("SELECT length(by), typeof(by) FROM ty WHERE id = 2"),
        vec![vec![json!(0), json!("blob")]]
    );
    // Dates and times: SQLite's date functions read them; timestamptz is the UTC instant
    // whatever the session's TimeZone was.
    assert_eq!(
        q("SELECT d, date(d), tm, time(tm), ts, strftime('%Y-%m-%d %H:%M:%f', ts) FROM ty WHERE id = 1"),
        vec![vec![json!("2024-02-29"), json!("2024-02-29"), json!("13:14:15.5"), json!("13:14:15"), json!("2024-03-10 12:34:56.789"), json!("2024-03-10 12:34:56.789")]]
    );
    let epoch = one(
        &mut c,
        "SELECT extract(epoch FROM tstz)::bigint FROM ty WHERE id = 1",
    );
    assert_eq!(
        q("SELECT tstz, CAST(strftime('%s', tstz) AS INTEGER) FROM ty WHERE id = 1"),
        vec![vec![
            json!("2024-07-01 13:00:00Z"),
            json!(epoch.parse::<i64>().unwrap())
        ]]
    );
    assert_eq!(
        q("SELECT CAST(strftime('%s', tstz) AS INTEGER) FROM ty WHERE id = 3"),
        vec![vec![json!(0)]]
    );
    assert_eq!(
        q("SELECT ttz FROM ty WHERE id = 1"),
        vec![vec![json!("01:02:03+05:30")]]
    );
    assert_eq!(
        q("SELECT d, ts, tstz FROM ty WHERE id = 2"),
        vec![vec![
            json!("infinity"),
            json!("-infinity"),
            json!("infinity")
        ]]
    );
    assert_eq!(
        q("SELECT ts FROM ty WHERE id = 3"),
        vec![vec![json!("1999-12-31 23:59:59.999999")]]
    );
    // interval, uuid, inet, money: PostgreSQL's text output.
    assert_eq!(
        q("SELECT iv, u, inet FROM ty WHERE id = 1"),
        vec![vec![
            json!("1 day 02:03:04"),
            json!("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
            json!("10.0.0.1/8")
        ]]
    );
    assert_eq!(
        q("SELECT typeof(money) FROM ty WHERE id = 1"),
        vec![vec![json!("text")]]
    );
    // json, jsonb and arrays: JSON text that json_extract reads.
    assert_eq!(
        q("SELECT json_extract(j, '$.a[1]'), json_extract(j, '$.a[2].b'), json_extract(jb, '$.k'), json_extract(jb, '$.n') FROM ty WHERE id = 1"),
        vec![vec![json!(2), Json::Null, json!("v"), json!(1.5)]]
    );
    assert_eq!(
        q("SELECT arr, json_extract(arr, '$[1]'), json_extract(arr, '$[2]'), json_array_length(arr2), json_extract(arr2, '$[1][1]'), json_extract(arr2, '$[1][0]') FROM ty WHERE id = 1"),
        vec![vec![json!("[1,null,3]"), Json::Null, json!(3), json!(2), json!("d"), Json::Null]]
    );
    assert_eq!(
        q("SELECT arr, j, jb FROM ty WHERE id IN (2, 3) ORDER BY id"),
        vec![
            vec![json!("[]"), Json::Null, Json::Null],
            vec![Json::Null, json!("null"), json!("[]")]
        ]
    );
    // Generated columns carry their values; dropped columns are not there.
    assert_eq!(
        q("SELECT gen FROM ty ORDER BY id"),
        vec![vec![json!(10)], vec![json!(20)], vec![json!(30)]]
    );
    let cols: Vec<String> = q("SELECT name FROM pragma_table_info('ty')")
        .into_iter()
        .map(|r| r[0].as_str().unwrap().to_string())
        .collect();
    assert!(
        !cols.iter().any(|c| c.contains("dropped") || c == "dropme"),
        "{cols:?}"
    );
    assert_eq!(cols.len(), 30);
    // Declared types follow the type map.
    let decl = q("SELECT name, type FROM pragma_table_info('ty') WHERE name IN ('b', 'r4', 'num', 'by', 'tstz', 'arr', 'o')");
    let decl: Vec<(String, String)> = decl
        .into_iter()
        .map(|r| (r[0].as_str().unwrap().into(), r[1].as_str().unwrap().into()))
        .collect();
    for (name, ty) in [
        ("o", "INTEGER"),
        ("b", "INTEGER"),
        ("r4", "REAL"),
        ("num", "TEXT"),
        ("by", "BLOB"),
        ("tstz", "TEXT"),
        ("arr", "TEXT"),
    ] {
        assert!(
            decl.contains(&(name.to_string(), ty.to_string())),
            "{name} should be {ty}: {decl:?}"
        );
    }
}

#[test]
fn unchanged_toast_values_stay_as_they_are() {
    let sqld = Sqld::start("toast", false);
    let (mut c, slot) = setup("toast");
    c.batch_execute(
        "CREATE TABLE keyed(id int PRIMARY KEY, big text, other text);
         ALTER TABLE keyed ALTER COLUMN big SET STORAGE EXTERNAL;
         CREATE TABLE full_id(big text, other text);
         ALTER TABLE full_id ALTER COLUMN big SET STORAGE EXTERNAL;
         ALTER TABLE full_id REPLICA IDENTITY FULL;
         INSERT INTO keyed VALUES (1, repeat('x', 10000), 'a');
         INSERT INTO full_id VALUES (repeat('y', 12000), 'a');",
    )
    .unwrap();
    get_changes(&mut c, &slot, &[("url", &sqld.url())]).unwrap();
    c.batch_execute("UPDATE keyed SET other = 'b' WHERE id = 1; UPDATE full_id SET other = 'b'")
        .unwrap();
    get_changes(&mut c, &slot, &[("url", &sqld.url())]).unwrap();
    assert_eq!(
        sqld.query("SELECT length(big), other FROM keyed"),
        vec![vec![json!(10000), json!("b")]]
    );
    assert_eq!(
        sqld.query("SELECT length(big), other FROM full_id"),
        vec![vec![json!(12000), json!("b")]]
    );
    // Changing the TOASTed value itself sends it.
    c.batch_execute("UPDATE keyed SET big = repeat('z', 9000) WHERE id = 1")
        .unwrap();
    get_changes(&mut c, &slot, &[("url", &sqld.url())]).unwrap();
    assert_eq!(
        sqld.query("SELECT substr(big, 1, 1), length(big) FROM keyed"),
        vec![vec![json!("z"), json!(9000)]]
    );
}

/// The Turso table's columns and rows, compared with PostgreSQL's (values as text).
#[test]
fn schema_changes_follow_in_the_same_turso_transaction() {
    let sqld = Sqld::start("schema", false);
    let (mut c, slot) = setup("schema");
    let url = sqld.url();
    let sync = |c: &mut postgres::Client| get_changes(c, &slot, &[("url", url.as_str())]);
    c.batch_execute("CREATE TABLE t(id int PRIMARY KEY, a text, b int); INSERT INTO t VALUES (1, 'one', 1), (2, 'two', 2)").unwrap();
    sync(&mut c).unwrap();
    // ADD COLUMN with and without default: existing Turso rows get the default.
    c.batch_execute("ALTER TABLE t ADD COLUMN c int DEFAULT 5; ALTER TABLE t ADD COLUMN d text; INSERT INTO t VALUES (3, 'three', 3, 33, 'dd')").unwrap();
    sync(&mut c).unwrap();
    assert_same_table(&mut c, &sqld, "t", "t");
    assert_eq!(
        sqld.query("SELECT c FROM t WHERE id = 1"),
        vec![vec![json!(5)]]
    );
    // RENAME COLUMN keeps the data; DROP COLUMN removes it; a swap of names works.
    c.batch_execute("ALTER TABLE t RENAME COLUMN a TO a2; ALTER TABLE t DROP COLUMN b; UPDATE t SET c = 6 WHERE id = 2").unwrap();
    sync(&mut c).unwrap();
    assert_same_table(&mut c, &sqld, "t", "t");
    c.batch_execute("ALTER TABLE t RENAME COLUMN a2 TO x; ALTER TABLE t RENAME COLUMN d TO a2; ALTER TABLE t RENAME COLUMN x TO d; INSERT INTO t VALUES (4, 'four', 44, 'a2 value')").unwrap();
    sync(&mut c).unwrap();
    assert_same_table(&mut c, &sqld, "t", "t");
    // RENAME TABLE renames the Turso table, rows included.
    c.batch_execute(
        "ALTER TABLE t RENAME TO t_renamed; INSERT INTO t_renamed VALUES (5, 'five', 55, 'x')",
    )
    .unwrap();
    sync(&mut c).unwrap();
    assert!(!sqld.table_exists("t"));
    assert_same_table(&mut c, &sqld, "t_renamed", "t_renamed");
    // DDL between DML in one transaction.
    c.batch_execute("BEGIN; INSERT INTO t_renamed VALUES (6, 'six', 66, 'y'); ALTER TABLE t_renamed ADD COLUMN e text; INSERT INTO t_renamed VALUES (7, 'seven', 77, 'z', 'ee'); COMMIT").unwrap();
    let out = sync(&mut c).unwrap();
    assert_eq!(out.len(), 1, "{out:?}");
    assert_same_table(&mut c, &sqld, "t_renamed", "t_renamed");
    // A type change follows too (tests/schema.rs has the kinds of them).
    c.batch_execute("ALTER TABLE t_renamed ALTER COLUMN c TYPE text; UPDATE t_renamed SET c = 'text now' WHERE id = 1").unwrap();
    sync(&mut c).unwrap();
    assert_same_table(&mut c, &sqld, "t_renamed", "t_renamed");
}
