//! End-to-end tests of large transactions: multi-row statements, transactions spanning several
//! requests of one Hrana stream, and atomicity when such a stream fails half-way.

mod common;

use common::setup_slot as setup;

use common::proxy::{Action, Proxy};
use common::{assert_mirror, confirmed_lsn, db_error, get_changes, pg_rows, Rng, Sqld};
use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};

/// Consumes the slot into `url` with `max_request_records` records per request.
fn replicate(c: &mut postgres::Client, slot: &str, url: &str, max_records: usize) -> Vec<String> {
    let max_records = max_records.to_string();
    get_changes(
        c,
        slot,
        &[("url", url), ("max_request_records", &max_records)],
    )
    .unwrap()
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
    assert!(proxy.requests.load(Ordering::SeqCst) > 10);
    assert!(
        !sqld.table_exists("big"),
        "the partial transaction must roll back, table creation included"
    );
    let out = replicate(&mut c, &slot, &sqld.url(), 500);
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
    let out = replicate(&mut c, &slot, &sqld.url(), 700);
    assert_eq!(out.len(), 2, "{out:?}");
    assert_mirror(&mut c, &sqld, "a", "id, v");
    assert_mirror(&mut c, &sqld, "b", "x, y, v");
    assert_eq!(
        sqld.query("SELECT v FROM a WHERE id = 1"),
        vec![vec![json!("last")]]
    );
}

/// Upserts of the same row (an INSERT, then UPDATEs) follow each other with nothing between, so
/// they would share one multi-row statement: a repeated key must start a new statement, or the
/// server could apply an older version last. The table and column are named like the alias and
/// column pgturso's JSON-rows statements read their rows through (`r.j`).
#[test]
fn repeated_keys_in_a_run_of_upserts_end_at_the_last_version() {
    let sqld = Sqld::start("repeat", false);
    let (mut c, slot) = setup("repeat");
    c.batch_execute(
        "CREATE TABLE r(id int primary key, j text, n int);
         BEGIN;
         INSERT INTO r SELECT g, 'v' || g, 0 FROM generate_series(1, 1500) g;
         UPDATE r SET j = j || '+1', n = n + 1;
         UPDATE r SET j = j || '+2', n = n + 1 WHERE id % 2 = 0;
         INSERT INTO r SELECT g, 'w' || g, 0 FROM generate_series(1501, 1600) g;
         UPDATE r SET j = j || '+3', n = n + 1 WHERE id % 3 = 0 OR id > 1590;
         DELETE FROM r WHERE id % 5 = 0;
         COMMIT;",
    )
    .unwrap();
    let out = replicate(&mut c, &slot, &sqld.url(), 10000);
    assert_eq!(out.len(), 1, "{out:?}");
    assert!(out[0].ends_with(": 4710 changes"), "{out:?}");
    assert_mirror(&mut c, &sqld, "r", "id, j, n");
    assert_eq!(
        sqld.query("SELECT j, n FROM r WHERE id = 6"),
        vec![vec![json!("v6+1+2+3"), json!(3)]]
    );
    assert!(sqld.query("SELECT j FROM r WHERE id = 10").is_empty());
}

/// Runs of DELETEs become one statement per run, whatever the key's type: integer and text keys
/// travel as a flat JSON array, float and bytea keys as rows (`[m, e]`, `{"b": hex}`), and a
/// composite key as row values. Every deleted row must go, every other row stay.
#[test]
fn runs_of_deletes_find_their_rows_for_every_kind_of_key() {
    let sqld = Sqld::start("delkeys", false);
    let (mut c, slot) = setup("delkeys");
    c.batch_execute(
        "CREATE TABLE ki(k int8 primary key, v int);
         CREATE TABLE kt(k text primary key, v int);
         CREATE TABLE kf(k float8 primary key, v int);
         CREATE TABLE kb(k bytea primary key, v int);
         CREATE TABLE kc(a int, b text, v int, primary key (a, b));
         INSERT INTO ki SELECT g * 1000000000000, g FROM generate_series(-300, 300) g;
         INSERT INTO kt SELECT CASE g % 4 WHEN 0 THEN 'k' || g WHEN 1 THEN 'q\"' || g || '\\'
                              WHEN 2 THEN 'é€😀 ' || g ELSE g::text END, g FROM generate_series(1, 600) g;
         INSERT INTO kf SELECT g / 7.0 * CASE WHEN g % 2 = 0 THEN -1 ELSE 1 END, g FROM generate_series(1, 600) g;
         INSERT INTO kf VALUES (0.0, 0), (1e-310, -1), ('Infinity', -2);
         INSERT INTO kb SELECT decode(md5(g::text), 'hex'), g FROM generate_series(1, 600) g;
         INSERT INTO kc SELECT g % 10, 'b' || g, g FROM generate_series(1, 600) g;",
    )
    .unwrap();
    let url = sqld.url();
    get_changes(&mut c, &slot, &[("url", url.as_str())]).unwrap();
    c.batch_execute(
        "BEGIN;
         DELETE FROM ki WHERE v % 3 = 0;
         DELETE FROM kt WHERE v % 3 = 0;
         DELETE FROM kf WHERE v % 3 = 0;
         DELETE FROM kb WHERE v % 3 = 0;
         DELETE FROM kc WHERE v % 3 = 0;
         COMMIT;",
    )
    .unwrap();
    let out = get_changes(&mut c, &slot, &[("url", url.as_str())]).unwrap();
    assert_eq!(out.len(), 1, "{out:?}");
    assert!(out[0].ends_with(": 1002 changes"), "{out:?}");
    assert_mirror(&mut c, &sqld, "ki", "k, v");
    assert_mirror(&mut c, &sqld, "kt", "k, v");
    assert_mirror(&mut c, &sqld, "kc", "a, b, v");
    // Float and bytea keys read differently on the two sides: compare v (unique per row), and
    // the bytea keys as hex.
    for (table, pg_cols, turso_cols) in [
        ("kf", "v", "v"),
        ("kb", "v, encode(k, 'hex')", "v, lower(hex(k))"),
    ] {
        let pg_side = pg_rows(&mut c, &format!("SELECT {pg_cols} FROM {table} ORDER BY v"));
        let turso = sqld.query_text(&format!("SELECT {turso_cols} FROM {table} ORDER BY v"));
        assert_eq!(
            turso.len(),
            if table == "kf" { 402 } else { 400 },
            "{table}"
        );
        assert!(turso == pg_side, "{table} differs from PostgreSQL");
    }
    // 0.0 (v = 0) went; the subnormal and 'Infinity' stay.
    assert_eq!(
        sqld.query("SELECT v FROM kf WHERE v <= 0 ORDER BY v"),
        vec![vec![json!(-2)], vec![json!(-1)]]
    );
}

static MOVED_TO_PORT: AtomicU16 = AtomicU16::new(0);

/// Answers as if the stream had moved to the server at `MOVED_TO_PORT`.
fn move_stream(body: &str) -> String {
    let to = format!(
        "\"base_url\":\"http://127.0.0.1:{}/\"",
        MOVED_TO_PORT.load(Ordering::SeqCst)
    );
    body.replacen("\"base_url\":null", &to, 1)
}

/// sqld never moves a stream; Turso's cloud may, by answering with a `base_url`, and then every
/// later request of that stream must go there. Proxy `a` answers everything with a `base_url`
/// naming proxy `b` (both in front of the same sqld): a transaction of many requests must start at
/// `a`, continue at `b`, and land whole.
#[test]
fn a_stream_follows_its_base_url() {
    let sqld = Sqld::start("baseurl", false);
    let (mut c, slot) = setup("baseurl");
    let b = Proxy::start(sqld.port, |_| Action::Forward);
    MOVED_TO_PORT.store(b.port, Ordering::SeqCst);
    let a = Proxy::start(sqld.port, |_| Action::RewriteResponse(move_stream));
    c.batch_execute(
        "CREATE TABLE m(id int primary key, v text);
         INSERT INTO m SELECT g, 'row ' || g FROM generate_series(1, 5000) g",
    )
    .unwrap();
    let out = replicate(&mut c, &slot, &a.url(), 500);
    assert_eq!(out.len(), 1, "{out:?}");
    assert_mirror(&mut c, &sqld, "m", "id, v");
    let (at_a, at_b) = (
        a.requests.load(Ordering::SeqCst),
        b.requests.load(Ordering::SeqCst),
    );
    // a: the progress read and the new table's schema read (each a stream of its own), and the
    // transaction's first request; b: the rest of the transaction, 5,000 rows at 500 per request.
    assert_eq!(at_a, 3, "requests at a: {at_a}, at b: {at_b}");
    assert!(at_b >= 9, "requests at a: {at_a}, at b: {at_b}");
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

/// A finite float of any magnitude (random bits), subnormals and signed zeros included.
fn rand_float(rng: &mut Rng) -> f64 {
    match rng.below(8) {
        0 => -0.0,
        1 => f64::from_bits(rng.below(1 << 52)), // subnormal
        2 => f64::MAX,
        3 => rng.below(2_000_000) as f64 / 7.0 - 100_000.0,
        _ => loop {
            let f = f64::from_bits(rng.next());
            if f.is_finite() {
                break f;
            }
        },
    }
}

fn rand_bytes(rng: &mut Rng) -> Vec<u8> {
    let n = rng.below(40) as usize;
    (0..n).map(|_| rng.next() as u8).collect()
}

fn rand_text(rng: &mut Rng) -> String {
    const PIECES: [&str; 12] = [
        "a", "Z", "\"", "'", "\\", "\n", "\t", "\u{1}", "\u{1f}", "é", "𝄞", "\u{2028}",
    ];
    let n = rng.below(30);
    (0..n).map(|_| *rng.pick(&PIECES)).collect()
}

/// Rows of `t` as exact text: floats as their bits (`-0` as `0`: SQLite stores a REAL zero
/// without its sign), bytes as hex.
fn exact_rows(rows: Vec<Vec<Option<String>>>) -> Vec<String> {
    rows.into_iter()
        .map(|r| {
            let f = |i: usize| {
                r[i].as_deref().map(|s| {
                    let v: f64 = s.parse().unwrap_or_else(|_| panic!("float {s}"));
                    format!("{:016x}", (v + 0.0).to_bits())
                })
            };
            format!(
                "{:?} {:?} {:?} {:?} {:?} {:?}",
                r[0],
                r[1].as_deref().map(str::to_lowercase),
                f(2),
                r[3],
                f(4),
                r[5]
            )
        })
        .collect()
}

#[test]
fn multi_row_statements_carry_every_value_exactly() {
    let sqld = Sqld::start("exact", false);
    carry_every_value_exactly(&sqld, "exact", &sqld.url());
}

static SENT_JSON_ROWS: AtomicBool = AtomicBool::new(false);
static SENT_PLACEHOLDER_ROWS: AtomicBool = AtomicBool::new(false);

/// Plays a server without `unhex`: sqld fails the probe for JSON rows, and serves the rest.
fn without_unhex(body: &str) -> String {
    if body.contains("json_each(?)") {
        SENT_JSON_ROWS.store(true, Ordering::SeqCst);
    }
    if body.contains("VALUES (?, ?, ?, ?, ?, ?), (?") {
        SENT_PLACEHOLDER_ROWS.store(true, Ordering::SeqCst);
    }
    body.replace("unhex('00')", "pgturso_no_unhex('00')")
}

/// A server that lacks a function JSON rows need gets multi-row placeholder statements instead
/// (`INSERT … VALUES (?, …), …`, `DELETE … WHERE (…) IN (VALUES (?, …), …)`), split under
/// SQLite's limit of 32,766 bound parameters (6,000 rows of 6 columns are 36,000 values), with
/// every value as exact as with JSON rows. The proxy only makes sqld fail the probe.
#[test]
fn without_json_functions_multi_row_statements_use_placeholders() {
    let sqld = Sqld::start("fallback", false);
    let proxy = Proxy::start(sqld.port, |_| Action::Rewrite(without_unhex));
    carry_every_value_exactly(&sqld, "fallback", &proxy.url());
    assert!(SENT_PLACEHOLDER_ROWS.load(Ordering::SeqCst));
    assert!(!SENT_JSON_ROWS.load(Ordering::SeqCst));
}

/// 6,000 rows of every awkward kind (random floats and bytes in the key, NULLs, numeric), then one
/// transaction deleting a third and updating a third by their whole key, replicated through `url`
/// (sqld itself, or a proxy in front of it) and compared value by value.
fn carry_every_value_exactly(sqld: &Sqld, name: &str, url: &str) {
    let (mut c, slot) = setup(name);
    // The key has a float and a bytea in it: deletes match on values that travel as JSON too.
    c.batch_execute(
        "CREATE TABLE t(id int8, b bytea, f float8, txt text, r float4, n numeric,
                        PRIMARY KEY (id, b, f))",
    )
    .unwrap();
    let mut rng = Rng(0x5eed);
    let mut keys = Vec::new();
    let mut tx = c.transaction().unwrap();
    let ins = tx
        .prepare("INSERT INTO t VALUES ($1, $2, $3, $4, $5::float8::float4, $6::text::numeric)")
        .unwrap();
    for i in 0..6000i64 {
        let id = match i {
            0 => i64::MIN,
            1 => i64::MAX,
            _ => i * 7919 - 1_000_000,
        };
        let (b, f) = (rand_bytes(&mut rng), rand_float(&mut rng));
        let r = f64::from(rand_float(&mut rng) as f32);
        let r = if r.is_finite() { Some(r) } else { None };
        let n = format!("{}.{}", rng.next() as i64, rng.next() % 1000);
        let txt = if i % 11 == 0 {
            None
        } else {
            Some(rand_text(&mut rng))
        };
        tx.execute(&ins, &[&id, &b, &f, &txt, &r, &n]).unwrap();
        keys.push((id, b, f));
    }
    tx.commit().unwrap();
    get_changes(&mut c, &slot, &[("url", url)]).unwrap();
    // One transaction deleting a third of the rows by their whole key, then updating a third.
    let mut tx = c.transaction().unwrap();
    let del = tx
        .prepare("DELETE FROM t WHERE id = $1 AND b = $2 AND f = $3")
        .unwrap();
    let upd = tx
        .prepare(
            "UPDATE t SET txt = $4, r = $5::float8::float4 WHERE id = $1 AND b = $2 AND f = $3",
        )
        .unwrap();
    for (id, b, f) in keys.iter().step_by(3) {
        assert_eq!(tx.execute(&del, &[id, b, f]).unwrap(), 1);
    }
    for (id, b, f) in keys.iter().skip(1).step_by(3) {
        let r = f64::from(rand_float(&mut rng) as f32);
        let r = if r.is_finite() { Some(r) } else { None };
        tx.execute(&upd, &[id, b, f, &rand_text(&mut rng), &r])
            .unwrap();
    }
    tx.commit().unwrap();
    let out = get_changes(&mut c, &slot, &[("url", url)]).unwrap();
    assert_eq!(out.len(), 1, "{out:?}");
    c.batch_execute("SET extra_float_digits = 3").unwrap();
    let pg_side = exact_rows(pg_rows(
        &mut c,
        "SELECT id, encode(b, 'hex'), f, txt, r::float8, n FROM t ORDER BY id",
    ));
    let turso = exact_rows(sqld.query_text(
        "SELECT id, hex(b), printf('%!.17g', f), txt, iif(r IS NULL, NULL, printf('%!.17g', r)), n \
         FROM t ORDER BY id",
    ));
    assert_eq!(pg_side.len(), 4000);
    assert_eq!(turso.len(), pg_side.len());
    for (t, p) in turso.iter().zip(&pg_side) {
        assert_eq!(t, p);
    }
}

#[test]
fn an_open_stream_is_kept_alive_while_filtered_changes_are_decoded() {
    let sqld = Sqld::start("keepalive", false);
    let (mut c, slot) = setup("keepalive");
    c.batch_execute("CREATE TABLE t(id int PRIMARY KEY); CREATE TABLE u(id int)")
        .unwrap();
    let proxy = Proxy::start(sqld.port, |_| Action::Forward);
    let requests = || proxy.requests.load(std::sync::atomic::Ordering::SeqCst);
    // Each transaction opens a stream (one record per request), then decoding goes through
    // 300,000 rows of a table that table_name leaves out, then one more row for the stream.
    let mut run = |first: i32, keepalive_ms: &str| {
        c.batch_execute(&format!(
            "BEGIN;
             INSERT INTO t VALUES ({first}), ({first} + 1), ({first} + 2);
             INSERT INTO u SELECT generate_series(1, 300000);
             INSERT INTO t VALUES ({first} + 3);
             COMMIT;"
        ))
        .unwrap();
        let before = requests();
        let opts = [
            ("url", proxy.url()),
            ("table_name", "t".to_string()),
            ("max_request_records", "1".to_string()),
            ("keepalive_ms", keepalive_ms.to_string()),
        ];
        let opts: Vec<(&str, &str)> = opts.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let out = get_changes(&mut c, &slot, &opts).unwrap();
        assert_eq!(out.len(), 1, "{out:?}");
        requests() - before
    };
    let quiet = run(1, "3600000");
    let kept = run(11, "20");
    assert!(
        kept >= quiet + 3,
        "keep-alive requests expected: {kept} requests with keepalive_ms=20, {quiet} without"
    );
    assert_eq!(
        sqld.query("SELECT count(*), sum(id) FROM t"),
        vec![vec![json!(8), json!(1 + 2 + 3 + 4 + 11 + 12 + 13 + 14)]]
    );
    assert!(!sqld.table_exists("u"));
}
