//! End-to-end tests of `publication_names`: the plugin replicates the tables of the named
//! publications (`FOR TABLE`, `FOR TABLES IN SCHEMA`, `FOR ALL TABLES`, a partitioned table's
//! partitions) and only the kinds of change they publish, as pgoutput does.

mod common;

use common::setup_slot as setup;
use common::{confirmed_lsn, db_error, get_changes, Sqld};
use serde_json::{json, Value as Json};

fn ids(sqld: &Sqld, table: &str) -> Vec<Vec<Json>> {
    if !sqld.table_exists(table) {
        return vec![];
    }
    sqld.query(&format!("SELECT * FROM \"{table}\" ORDER BY 1"))
}

#[test]
fn the_named_publications_choose_tables_and_kinds_of_change() {
    let sqld = Sqld::start("pubs", false);
    let (mut c, slot) = setup("pubs");
    c.batch_execute(
        "CREATE TABLE a(id int PRIMARY KEY, v text);
         CREATE TABLE b(id int PRIMARY KEY);
         CREATE SCHEMA s;
         CREATE TABLE s.d(id int PRIMARY KEY);
         CREATE TABLE parted(id int PRIMARY KEY) PARTITION BY RANGE (id);
         CREATE TABLE parted_low PARTITION OF parted FOR VALUES FROM (0) TO (100);
         CREATE PUBLICATION p_a FOR TABLE a WITH (publish = 'insert, update');
         CREATE PUBLICATION p_s FOR TABLES IN SCHEMA s;
         CREATE PUBLICATION p_parted FOR TABLE parted;
         CREATE PUBLICATION p_all FOR ALL TABLES;",
    )
    .unwrap();
    for sql in [
        "INSERT INTO a VALUES (1, 'x'), (2, 'y')",
        "INSERT INTO b VALUES (1)",
        "INSERT INTO s.d VALUES (1)",
        "INSERT INTO parted VALUES (5)",
        "UPDATE a SET v = 'changed' WHERE id = 1",
        "DELETE FROM a WHERE id = 2",
    ] {
        c.batch_execute(sql).unwrap();
    }
    let url = sqld.url();
    let opts = [
        ("url", url.as_str()),
        ("publication_names", " p_a , \"p_s\",p_parted"),
    ];
    let lines = get_changes(&mut c, &slot, &opts).unwrap();
    assert_eq!(
        lines.len(),
        4,
        "{lines:?}: the transactions of a's insert and update, s.d and parted"
    );
    // p_a publishes inserts and updates of a, not its deletes.
    assert_eq!(
        ids(&sqld, "a"),
        vec![vec![json!(1), json!("changed")], vec![json!(2), json!("y")]]
    );
    assert!(!sqld.table_exists("b"), "b is in no named publication");
    assert_eq!(ids(&sqld, "s.d"), vec![vec![json!(1)]]);
    assert_eq!(
        ids(&sqld, "parted_low"),
        vec![vec![json!(5)]],
        "a partition through its parent"
    );
    // FOR ALL TABLES takes b too, and every kind of change.
    c.batch_execute("INSERT INTO b VALUES (2); DELETE FROM a WHERE id = 1; TRUNCATE s.d")
        .unwrap();
    get_changes(
        &mut c,
        &slot,
        &[("url", url.as_str()), ("publication_names", "p_all")],
    )
    .unwrap();
    assert_eq!(ids(&sqld, "b"), vec![vec![json!(2)]]);
    assert_eq!(ids(&sqld, "a"), vec![vec![json!(2), json!("y")]]);
    assert_eq!(ids(&sqld, "s.d"), Vec::<Vec<Json>>::new());
    // A publication added to later counts from its change on.
    c.batch_execute("ALTER PUBLICATION p_a ADD TABLE b")
        .unwrap();
    c.batch_execute("INSERT INTO b VALUES (3)").unwrap();
    get_changes(
        &mut c,
        &slot,
        &[("url", url.as_str()), ("publication_names", "p_a")],
    )
    .unwrap();
    assert_eq!(ids(&sqld, "b"), vec![vec![json!(2)], vec![json!(3)]]);
    // A publication that does not exist is an error, and the slot stays.
    c.batch_execute("INSERT INTO b VALUES (4)").unwrap();
    let before = confirmed_lsn(&mut c, &slot);
    let err = get_changes(
        &mut c,
        &slot,
        &[("url", url.as_str()), ("publication_names", "p_a, nope")],
    )
    .unwrap_err();
    let (code, message, _, _) = db_error(&err);
    assert_eq!(code, "42704", "{message}");
    assert_eq!(message, "publication \"nope\" does not exist");
    assert_eq!(confirmed_lsn(&mut c, &slot), before);
    assert_eq!(ids(&sqld, "b").len(), 2);
}

/// Row filters with pgoutput's semantics: a row is sent when it passes (NULL does not), an
/// UPDATE into the filter inserts, out of it deletes, within it updates; through a non-key
/// column under REPLICA IDENTITY FULL and through the key under the default identity.
#[test]
fn a_row_filter_moves_rows_in_and_out() {
    let sqld = Sqld::start("pubs_filters", false);
    let (mut c, slot) = setup("pubs_filters");
    c.batch_execute(
        "CREATE TABLE orders(id int PRIMARY KEY, status text, amount int);
         ALTER TABLE orders REPLICA IDENTITY FULL;
         CREATE TABLE keyed(id int PRIMARY KEY, v text);",
    )
    .unwrap();
    c.batch_execute(
        "CREATE PUBLICATION p_rows FOR TABLE orders WHERE (status <> 'draft'), keyed WHERE (id > 10)",
    )
    .unwrap();
    for sql in [
        "INSERT INTO orders VALUES (1, 'draft', 10), (2, 'paid', 20), (3, 'paid', 30), (4, 'draft', 40), (5, NULL, 50), (6, 'paid', 60)",
        "UPDATE orders SET status = 'paid' WHERE id = 1",     // enters
        "UPDATE orders SET status = 'draft' WHERE id = 2",    // leaves
        "UPDATE orders SET status = 'shipped', amount = 31 WHERE id = 3", // stays
        "UPDATE orders SET amount = 41 WHERE id = 4",         // stays out
        "UPDATE orders SET status = 'paid' WHERE id = 5",     // NULL, then in
        "DELETE FROM orders WHERE id IN (4, 6)",              // one out, one in
        "INSERT INTO keyed VALUES (5, 'a'), (15, 'b'), (20, 'c')",
        "UPDATE keyed SET id = 16 WHERE id = 5",              // enters through its key
        "UPDATE keyed SET id = 3 WHERE id = 20",              // leaves through its key
        "UPDATE keyed SET v = 'changed' WHERE id = 15",       // stays
        "INSERT INTO keyed VALUES (7, 'out')",
        "UPDATE keyed SET v = 'still out' WHERE id = 7",      // stays out (no old tuple)
    ] {
        c.batch_execute(sql).unwrap();
    }
    let url = sqld.url();
    get_changes(
        &mut c,
        &slot,
        &[("url", url.as_str()), ("publication_names", "p_rows")],
    )
    .unwrap();
    let turso = sqld.query_text("SELECT id, status, amount FROM orders ORDER BY id");
    let pg = common::pg_rows(
        &mut c,
        "SELECT id::text, status, amount::text FROM orders WHERE status <> 'draft' ORDER BY orders.id",
    );
    assert_eq!(turso, pg);
    assert_eq!(turso.len(), 3, "{turso:?}");
    let turso = sqld.query_text("SELECT id, v FROM keyed ORDER BY id");
    let pg = common::pg_rows(
        &mut c,
        "SELECT id::text, v FROM keyed WHERE id > 10 ORDER BY keyed.id",
    );
    assert_eq!(turso, pg);
    assert_eq!(turso.len(), 2, "{turso:?}");
}

/// The names of a Turso table's columns, in order.
fn turso_columns(sqld: &Sqld, table: &str) -> Vec<String> {
    sqld.query_text(&format!(
        "SELECT name FROM pragma_table_info('{table}') ORDER BY cid"
    ))
    .into_iter()
    .map(|r| r[0].clone().unwrap_or_default())
    .collect()
}

/// A column list (`FOR TABLE people (id, name, age)`): only those columns exist in Turso and
/// travel, through inserts, updates of listed and unlisted columns, deletes and a TRUNCATE; a
/// list that leaves out the key, and different lists in two publications, are clear errors that
/// keep the slot where it was.
#[test]
fn a_column_list_sends_only_its_columns() {
    let sqld = Sqld::start("pubs_columns", false);
    let (mut c, slot) = setup("pubs_columns");
    c.batch_execute(
        "CREATE TABLE people(id int PRIMARY KEY, name text, secret text, age int);
         CREATE PUBLICATION p_cols FOR TABLE people (id, name, age);",
    )
    .unwrap();
    c.batch_execute(
        "INSERT INTO people SELECT g, 'n' || g, 'secret ' || g, g FROM generate_series(1, 20) g;
         UPDATE people SET secret = 'changed' WHERE id <= 5;
         UPDATE people SET name = 'renamed', secret = 'again' WHERE id BETWEEN 4 AND 8;
         DELETE FROM people WHERE id % 7 = 0;",
    )
    .unwrap();
    let url = sqld.url();
    get_changes(
        &mut c,
        &slot,
        &[("url", url.as_str()), ("publication_names", "p_cols")],
    )
    .unwrap();
    assert_eq!(turso_columns(&sqld, "people"), ["id", "name", "age"]);
    let turso = sqld.query_text("SELECT id, name, age FROM people ORDER BY id");
    let pg = common::pg_rows(
        &mut c,
        "SELECT id::text, name, age::text FROM people ORDER BY people.id",
    );
    assert_eq!(turso, pg);
    assert_eq!(turso.len(), 18);
    let everything = sqld.query_text("SELECT * FROM people").concat();
    assert!(
        everything
            .iter()
            .flatten()
            .all(|v| !v.contains("secret") && v != "changed" && v != "again"),
        "an unlisted column's values reached Turso: {everything:?}"
    );
    c.batch_execute("TRUNCATE people").unwrap();
    get_changes(
        &mut c,
        &slot,
        &[("url", url.as_str()), ("publication_names", "p_cols")],
    )
    .unwrap();
    assert_eq!(
        sqld.query_text("SELECT count(*) FROM people"),
        [[Some("0".to_string())]]
    );
    assert_eq!(turso_columns(&sqld, "people"), ["id", "name", "age"]);

    // The key left out (PostgreSQL allows it for a publication of inserts only).
    c.batch_execute(
        "CREATE TABLE k(id int PRIMARY KEY, v text);
         CREATE PUBLICATION p_nokey FOR TABLE k (v) WITH (publish = 'insert');",
    )
    .unwrap();
    c.batch_execute("INSERT INTO k VALUES (1, 'x')").unwrap();
    let before = confirmed_lsn(&mut c, &slot);
    let e = get_changes(
        &mut c,
        &slot,
        &[("url", url.as_str()), ("publication_names", "p_nokey")],
    )
    .unwrap_err();
    let (code, msg, _, hint) = db_error(&e);
    assert_eq!(code, "42P10", "{msg}");
    assert!(
        msg.contains("table \"public.k\" in its publication leaves out key column \"id\""),
        "{msg}"
    );
    assert!(hint.contains("add the key columns"), "{hint}");
    assert_eq!(confirmed_lsn(&mut c, &slot), before);
    assert!(!sqld.table_exists("k"));

    // Past that transaction (its table is not in p_cols), then different lists for one table in
    // two publications, as pgoutput refuses them.
    get_changes(
        &mut c,
        &slot,
        &[("url", url.as_str()), ("publication_names", "p_cols")],
    )
    .unwrap();
    c.batch_execute("CREATE PUBLICATION p_other FOR TABLE people (id, name)")
        .unwrap();
    c.batch_execute("INSERT INTO people VALUES (100, 'x', 'y', 1)")
        .unwrap();
    let e = get_changes(
        &mut c,
        &slot,
        &[
            ("url", url.as_str()),
            ("publication_names", "p_cols,p_other"),
        ],
    )
    .unwrap_err();
    let (code, msg, _, _) = db_error(&e);
    assert_eq!(code, "0A000", "{msg}");
    assert!(
        msg.contains("cannot use different column lists for table \"public.people\" in different publications"),
        "{msg}"
    );
}

/// An UPDATE of the key that brings a row into a row filter inserts the whole row in Turso; a
/// TOASTed value it left unchanged is in the WAL only with REPLICA IDENTITY FULL. Without it the
/// change is refused (pgoutput would send the row without the value), the slot stays, and once the
/// table has REPLICA IDENTITY FULL such updates carry every value.
#[test]
fn a_key_update_into_a_row_filter_without_its_toasted_value_is_refused() {
    let sqld = Sqld::start("pubs_toast_filter", false);
    let (mut c, slot) = setup("pubs_toast_filter");
    c.batch_execute(
        "CREATE TABLE docs(id int PRIMARY KEY, body text);
         ALTER TABLE docs ALTER COLUMN body SET STORAGE EXTERNAL;
         CREATE PUBLICATION p_docs FOR TABLE docs WHERE (id > 100);
         INSERT INTO docs VALUES (1, repeat('x', 10000)), (2, repeat('y', 10000));",
    )
    .unwrap();
    let url = sqld.url();
    let opts = [("url", url.as_str()), ("publication_names", "p_docs")];
    get_changes(&mut c, &slot, &opts).unwrap();
    let before = confirmed_lsn(&mut c, &slot);
    c.batch_execute("UPDATE docs SET id = 101 WHERE id = 1")
        .unwrap();
    let e = get_changes(&mut c, &slot, &opts).unwrap_err();
    let (code, msg, _, hint) = db_error(&e);
    assert_eq!(code, "55000", "{msg}");
    assert!(
        msg.contains("\"public.docs\"") && msg.contains("column \"body\""),
        "{msg}"
    );
    assert!(hint.contains("REPLICA IDENTITY FULL"), "{hint}");
    assert_eq!(confirmed_lsn(&mut c, &slot), before, "the slot moved");
    assert!(ids(&sqld, "docs").is_empty());
    // Past the refused change (the operator's choice), with REPLICA IDENTITY FULL the value travels.
    c.batch_execute(&format!(
        "SELECT pg_replication_slot_advance('{slot}', pg_current_wal_lsn());
         ALTER TABLE docs REPLICA IDENTITY FULL;
         UPDATE docs SET id = 102 WHERE id = 2;"
    ))
    .unwrap();
    get_changes(&mut c, &slot, &opts).unwrap();
    let turso =
        sqld.query_text("SELECT id, length(body), substr(body, 1, 1) FROM docs ORDER BY id");
    let want: Vec<Vec<Option<String>>> = vec![vec![
        Some("102".into()),
        Some("10000".into()),
        Some("y".into()),
    ]];
    assert_eq!(turso, want);
}
