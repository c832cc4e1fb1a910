//! End-to-end tests of large transactions: multi-row statements, transactions spanning several
//! requests of one Hrana stream, and atomicity when such a stream fails half-way.

mod common;

use common::setup_slot as setup;

use common::proxy::{Action, Proxy};
use common::{confirmed_lsn, db_error, get_changes, pg_rows, Sqld};
use serde_json::json;

/// Every row of `table` in PostgreSQL and in Turso, as text, ordered by the first column.
fn assert_mirror(c: &mut postgres::Client, sqld: &Sqld, table: &str, cols: &str) {
    let pg_side: Vec<String> = pg_rows(c, &format!("SELECT {cols} FROM {table} ORDER BY 1, 2"))
        .into_iter()
        .map(|r| format!("{r:?}"))
        .collect();
    let turso: Vec<String> = sqld
        .query_text(&format!("SELECT {cols} FROM {table} ORDER BY 1, 2"))
        .into_iter()
        .map(|r| format!("{r:?}"))
        .collect();
    assert_eq!(turso.len(), pg_side.len(), "row count of {table}");
    assert!(turso == pg_side, "{table} differs from PostgreSQL");
}

#[test]
fn large_transaction_spans_requests_atomically() {
    let sqld = Sqld::start("spans", false);
    let (mut c, slot) = setup("spans");
    c.batch_execute(
        "CREATE TABLE big(id int primary key, v text, n int);
         INSERT INTO big SELECT g, 'row ' || g, g % 7 FROM generate_series(1, 20000) g",
    )
    .unwrap();
    // 20,000 rows at 500 records per request: 40+ requests, and the 10th is answered with a 503.
    let proxy = Proxy::start(sqld.port, |n| {
        if n == 10 {
            Action::Respond(503, "{\"error\":\"unavailable\"}".into())
        } else {
            Action::Forward
        }
    });
    let before = confirmed_lsn(&mut c, &slot);
    let opts = [
        ("url", proxy.url()),
        ("max_request_records", "500".to_string()),
    ];
    let opts: Vec<(&str, &str)> = opts.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let err = get_changes(&mut c, &slot, &opts).unwrap_err();
    let (code, msg, _, _) = db_error(&err);
    assert_eq!(code, "08006", "{msg}");
    assert!(msg.contains("HTTP 503"), "{msg}");
    assert_eq!(confirmed_lsn(&mut c, &slot), before);
    // Nine requests of the transaction reached sqld, yet none of their rows is visible.
    assert!(proxy.requests.load(std::sync::atomic::Ordering::SeqCst) > 10);
    assert!(
        !sqld.table_exists("big"),
        "the partial transaction must roll back, table creation included"
    );
    let url = sqld.url();
    let out = get_changes(
        &mut c,
        &slot,
        &[("url", url.as_str()), ("max_request_records", "500")],
    )
    .unwrap();
    assert_eq!(out.len(), 1, "{out:?}");
    assert!(out[0].ends_with(": 20000 changes"), "{out:?}");
    assert_mirror(&mut c, &sqld, "big", "id, v, n");
}

#[test]
fn mixed_changes_keep_their_order_across_tables() {
    let sqld = Sqld::start("mixed", false);
    let (mut c, slot) = setup("mixed");
    c.batch_execute(
        "CREATE TABLE a(id int primary key, v text);
         CREATE TABLE b(x int, y text, v text, PRIMARY KEY (x, y));
         BEGIN;
         INSERT INTO a SELECT g, 'a' || g FROM generate_series(1, 3000) g;
         INSERT INTO b SELECT g % 50, 'k' || (g / 50), 'b' || g FROM generate_series(1, 3000) g;
         DELETE FROM a WHERE id % 3 = 0;
         UPDATE a SET v = v || '!' WHERE id % 3 = 1;
         INSERT INTO a SELECT g, 'again' || g FROM generate_series(3, 3000, 3) g;
         DELETE FROM b WHERE x % 2 = 0;
         UPDATE b SET y = y || 'moved' WHERE x = 1;
         UPDATE a SET id = id + 100000 WHERE id <= 10;
         INSERT INTO a VALUES (1, 'reused key');
         COMMIT;
         UPDATE a SET v = 'last' WHERE id = 1;",
    )
    .unwrap();
    let url = sqld.url();
    let out = get_changes(
        &mut c,
        &slot,
        &[("url", url.as_str()), ("max_request_records", "700")],
    )
    .unwrap();
    assert_eq!(out.len(), 2, "{out:?}");
    assert_mirror(&mut c, &sqld, "a", "id, v");
    assert_mirror(&mut c, &sqld, "b", "x, y, v");
    assert_eq!(
        sqld.query("SELECT v FROM a WHERE id = 1"),
        vec![vec![json!("last")]]
    );
}

#[test]
fn a_row_larger_than_the_byte_limit_still_goes_through() {
    let sqld = Sqld::start("bigrow", false);
    let (mut c, slot) = setup("bigrow");
    c.batch_execute(
        "CREATE TABLE r(id int primary key, v text);
         INSERT INTO r VALUES (1, 'small'), (2, repeat('x', 200000)), (3, 'small too')",
    )
    .unwrap();
    let url = sqld.url();
    get_changes(
        &mut c,
        &slot,
        &[("url", url.as_str()), ("max_request_bytes", "4096")],
    )
    .unwrap();
    assert_eq!(
        sqld.query("SELECT id, length(v) FROM r ORDER BY id"),
        vec![
            vec![json!(1), json!(5)],
            vec![json!(2), json!(200000)],
            vec![json!(3), json!(9)]
        ]
    );
}
