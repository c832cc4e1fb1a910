//! Fault injection between the plugin and a real sqld: transient HTTP errors, lost responses,
//! cut connections, a killed and restarted sqld, cancellation, and randomized rounds of faults
//! after which Turso must equal PostgreSQL exactly (no loss, no duplicates).
//!
//! `PGTURSO_FAULT_ROUNDS` sets the number of randomized rounds (default 4, for CI).

mod common;

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::proxy::{Action, Proxy};
use common::{db_error, get_changes, pg, pg_rows, Sqld};

fn setup(name: &str) -> (postgres::Client, String) {
    let (mut c, slot) = common::setup_slot(name);
    c.batch_execute(
        "CREATE TABLE k(id int primary key, v text, n int);
         CREATE TABLE log(n int, v text);
         ALTER TABLE log REPLICA IDENTITY FULL;",
    )
    .unwrap();
    (c, slot)
}

/// Turso equals PostgreSQL: the keyed table row by row, the keyless one as a multiset.
fn assert_exact(c: &mut postgres::Client, sqld: &Sqld) {
    // Keyed table, row by row, in pages: sqld refuses responses over about 10 MB.
    let has_k = sqld.table_exists("k");
    let mut last = i64::MIN;
    loop {
        let page = format!("SELECT id, v, n FROM k WHERE id > {last} ORDER BY id LIMIT 5000");
        let pg_side = pg_rows(c, &page);
        let turso = if has_k {
            sqld.query_text(&page)
        } else {
            vec![]
        };
        assert_eq!(
            turso.len(),
            pg_side.len(),
            "keyed table: row count after id {last}"
        );
        assert!(
            turso == pg_side,
            "keyed table differs from PostgreSQL after id {last}"
        );
        match pg_side.last() {
            Some(row) => last = row[0].as_ref().unwrap().parse().unwrap(),
            None => break,
        }
    }
    let sql = "SELECT n, v, count(*) FROM log GROUP BY n, v ORDER BY n, v";
    let pg_side = pg_rows(c, sql);
    let turso = if sqld.table_exists("log") {
        sqld.query_text(sql)
    } else {
        vec![]
    };
    assert_eq!(
        turso.len(),
        pg_side.len(),
        "keyless table (multiset): row count"
    );
    assert!(
        turso == pg_side,
        "keyless table (multiset) differs from PostgreSQL"
    );
}

fn write_some(c: &mut postgres::Client, from: i32, n: i32) {
    for i in from..from + n {
        c.batch_execute(&format!(
            "INSERT INTO k VALUES ({i}, 'v{i}', {i}); INSERT INTO log VALUES ({i}, 'row {i}')"
        ))
        .unwrap();
    }
}

#[test]
fn transient_http_errors_are_retried_within_one_call() {
    let sqld = Sqld::start("transient", false);
    let (mut c, slot) = setup("transient");
    write_some(&mut c, 1, 5);
    let proxy = Proxy::start(sqld.port, |n| match n {
        0 => Action::Respond(503, "{}".into()), // the progress read is retried too
        1 => Action::Respond(503, "{}".into()),
        2 => Action::Respond(429, "{}".into()),
        3 => Action::Close,
        4 => Action::Respond(502, "bad gateway".into()),
        _ => Action::Forward,
    });
    let out = get_changes(&mut c, &slot, &[("url", &proxy.url())]).unwrap();
    assert_eq!(out.len(), 5, "{out:?}");
    assert_exact(&mut c, &sqld);
}

/// SQLITE_BUSY ("database is locked": another writer holds SQLite's lock) is transient: the
/// transaction is retried, not failed. sqld gives it only under a race of two writers, so the
/// proxy plays it, for the transaction's first attempt and its first retry.
#[test]
fn a_locked_database_is_retried() {
    let sqld = Sqld::start("locked", false);
    let (mut c, slot) = setup("locked");
    write_some(&mut c, 1, 3);
    const LOCKED: &str = r#"{"baton":null,"base_url":null,"results":[{"type":"error","error":{"message":"SQLite error: database is locked","code":"SQLITE_BUSY"}},{"type":"ok","response":{"type":"close"}}]}"#;
    let proxy = Proxy::start(sqld.port, |n| match n {
        2 | 3 => Action::Respond(200, LOCKED.into()),
        _ => Action::Forward,
    });
    let out = get_changes(&mut c, &slot, &[("url", &proxy.url())]).unwrap();
    assert_eq!(out.len(), 3, "{out:?}");
    assert!(proxy.requests.load(std::sync::atomic::Ordering::SeqCst) > 4);
    assert_exact(&mut c, &sqld);
}

#[test]
fn permanent_errors_fail_at_once() {
    let sqld = Sqld::start("permanent", false);
    let (mut c, slot) = setup("permanent");
    write_some(&mut c, 1, 1);
    let proxy = Proxy::start(sqld.port, |_| {
        Action::Respond(403, "{\"error\":\"forbidden\"}".into())
    });
    let start = Instant::now();
    let err = get_changes(&mut c, &slot, &[("url", &proxy.url())]).unwrap_err();
    assert_eq!(db_error(&err).0, "28000");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "no retries for 403"
    );
    assert_eq!(
        proxy.requests.load(Ordering::SeqCst),
        1,
        "the first request fails and is not retried"
    );
}

#[test]
fn a_response_lost_after_commit_is_resolved_in_one_call() {
    let sqld = Sqld::start("lost1", false);
    let (mut c, slot) = setup("lost1");
    write_some(&mut c, 1, 6);
    let proxy = Proxy::start(sqld.port, |n| {
        if n == 2 || n == 5 {
            Action::ForwardThenDrop
        } else {
            Action::Forward
        }
    });
    let out = get_changes(&mut c, &slot, &[("url", &proxy.url())]).unwrap();
    assert_eq!(out.len(), 6, "{out:?}");
    assert_exact(&mut c, &sqld);
}

#[test]
fn sqld_killed_and_restarted_during_a_large_call() {
    let sqld = Arc::new(Mutex::new(Sqld::start("restart", false)));
    let (mut c, slot) = setup("restart");
    write_some(&mut c, 1, 30);
    c.batch_execute("INSERT INTO k SELECT g, 'big', g FROM generate_series(1000, 21000) g")
        .unwrap();
    let port = sqld.lock().unwrap().port;
    let killer = sqld.clone();
    let proxy = Proxy::start(port, move |n| {
        if n == 12 {
            let mut s = killer.lock().unwrap();
            s.kill();
            let again = killer.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(1500));
                again.lock().unwrap().restart();
            });
        }
        Action::Forward
    });
    let out = get_changes(
        &mut c,
        &slot,
        &[
            ("url", &proxy.url()),
            ("max_request_records", "1000"),
            ("retry_ms", "15000"),
        ],
    );
    let out = match out {
        Ok(out) => out,
        // A kill in the middle of the large transaction's stream cannot be resent (its outcome is
        // unknown): the call fails and the next one finishes the job.
        Err(e) => {
            let (code, msg, _, _) = db_error(&e);
            assert!(code.starts_with("08"), "{code} {msg}");
            std::thread::sleep(Duration::from_millis(2000));
            get_changes(&mut c, &slot, &[("url", &proxy.url())]).unwrap()
        }
    };
    assert!(!out.is_empty());
    let s = sqld.lock().unwrap();
    assert_exact(&mut c, &s);
}

#[test]
fn cancel_interrupts_a_hanging_request() {
    let sqld = Sqld::start("cancel", false);
    let (mut c, slot) = setup("cancel");
    write_some(&mut c, 1, 1);
    let proxy = Proxy::start(sqld.port, |_| Action::Delay(Duration::from_secs(60)));
    let pid: i32 = c.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    let canceller = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(800));
        let mut other = pg().connect("cancel");
        other
            .execute("SELECT pg_cancel_backend($1)", &[&pid])
            .unwrap();
    });
    let start = Instant::now();
    let err = get_changes(&mut c, &slot, &[("url", &proxy.url())]).unwrap_err();
    canceller.join().unwrap();
    assert_eq!(db_error(&err).0, "57014");
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "cancel took {:?}",
        start.elapsed()
    );
    get_changes(&mut c, &slot, &[("url", &sqld.url())]).unwrap();
    assert_exact(&mut c, &sqld);
}

/// A small deterministic generator (SplitMix64), so a failing seed can be replayed.
fn next(state: &AtomicU64) -> u64 {
    let mut z = state
        .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::SeqCst)
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[test]
fn randomized_rounds_of_faults_end_in_an_exact_mirror() {
    let rounds: u64 = std::env::var("PGTURSO_FAULT_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let seed: u64 = std::env::var("PGTURSO_FAULT_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(42);
    eprintln!("randomized faults: {rounds} rounds, seed {seed}");
    let sqld = Sqld::start("random", false);
    let (mut c, slot) = setup("random");
    let rng = Arc::new(AtomicU64::new(seed));
    // Fault probability in percent, per request.
    let rate = Arc::new(AtomicU32::new(0));
    // Requests held past timeout_ms and delivered anyway: each raises its flag once delivered.
    let late: Arc<Mutex<Vec<Arc<AtomicBool>>>> = Arc::default();
    let (prng, prate, plate) = (rng.clone(), rate.clone(), late.clone());
    let proxy = Proxy::start(sqld.port, move |_| {
        if (next(&prng) % 100) as u32 >= prate.load(Ordering::SeqCst) {
            return Action::Forward;
        }
        match next(&prng) % 7 {
            0 => Action::Close,
            1 => Action::Respond(500, "{\"error\":\"injected\"}".into()),
            2 => Action::Respond(429, "{}".into()),
            3 => Action::ForwardThenDrop,
            4 => Action::Delay(Duration::from_millis(50)),
            5 => {
                let landed = Arc::new(AtomicBool::new(false));
                plate.lock().unwrap().push(landed.clone());
                Action::Late(Duration::from_millis(2500 + next(&prng) % 1500), landed)
            }
            _ => Action::Respond(503, "{}".into()),
        }
    });
    let mut next_id = 1i64;
    let mut failures = 0;
    for round in 0..rounds {
        // A random workload: several transactions of inserts, updates, deletes, key changes.
        for _ in 0..(3 + next(&rng) % 5) {
            let mut sql = String::from("BEGIN;");
            for _ in 0..(1 + next(&rng) % 40) {
                let target = 1 + (next(&rng) as i64).rem_euclid(next_id.max(1));
                match next(&rng) % 6 {
                    0 | 1 => {
                        sql.push_str(&format!(
                            "INSERT INTO k VALUES ({next_id}, 'v{round}', {}) ON CONFLICT DO NOTHING; INSERT INTO log VALUES ({}, 'r{round}');",
                            next(&rng) % 1000,
                            next(&rng) % 50
                        ));
                        next_id += 1;
                    }
                    2 => sql.push_str(&format!("UPDATE k SET v = v || 'u', n = n + 1 WHERE id = {target};")),
                    3 => sql.push_str(&format!("DELETE FROM k WHERE id = {target}; DELETE FROM log WHERE ctid = (SELECT min(ctid) FROM log WHERE n = {});", next(&rng) % 50)),
                    4 => {
                        sql.push_str(&format!(
                            "UPDATE k SET id = {next_id} WHERE id = {target}; UPDATE log SET v = 'moved' WHERE ctid = (SELECT min(ctid) FROM log WHERE n = {});",
                            next(&rng) % 50
                        ));
                        next_id += 1;
                    }
                    _ => {
                        sql.push_str(&format!("INSERT INTO k SELECT g, 'bulk', g FROM generate_series({next_id}, {}) g;", next_id + 300));
                        next_id += 301;
                    }
                }
            }
            if next(&rng).is_multiple_of(8) {
                sql.push_str("ROLLBACK;");
            } else {
                sql.push_str("COMMIT;");
            }
            c.batch_execute(&sql).unwrap();
        }
        // Replicate through faults until a call succeeds; the last attempts are fault-free.
        let records = (50 + next(&rng) % 500).to_string();
        let mut done = false;
        for attempt in 0..8 {
            let faults = attempt < 6;
            rate.store(if faults { 35 } else { 0 }, Ordering::SeqCst);
            // A late first request of a multi-request transaction opens a Turso transaction
            // that nobody continues; sqld holds its write lock until the stream expires (about
            // 10 s), and requests wait behind it in sqld. The fault-free attempts wait and retry
            // long enough to ride that out.
            let (retry, timeout) = if faults {
                ("1500", "2000")
            } else {
                ("30000", "30000")
            };
            match get_changes(
                &mut c,
                &slot,
                &[
                    ("url", &proxy.url()),
                    ("max_request_records", &records),
                    ("retry_ms", retry),
                    ("timeout_ms", timeout),
                ],
            ) {
                Ok(_) => {
                    done = true;
                    break;
                }
                Err(e) => {
                    failures += 1;
                    let (code, msg, _, _) = db_error(&e);
                    eprintln!("round {round} attempt {attempt}: {code} {msg}");
                    // 55P03: Turso's write lock held by a late request's orphaned stream.
                    assert!(
                        code.starts_with("08") || code == "55P03",
                        "unexpected error {code}: {msg}"
                    );
                }
            }
        }
        assert!(done, "round {round}: no call succeeded");
        rate.store(0, Ordering::SeqCst);
        // Every late request has reached sqld (and was a no-op) before Turso is compared.
        let deadline = Instant::now() + Duration::from_secs(60);
        while late
            .lock()
            .unwrap()
            .iter()
            .any(|l| !l.load(Ordering::SeqCst))
        {
            assert!(
                Instant::now() < deadline,
                "a late request was never delivered"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_exact(&mut c, &sqld);
        eprintln!(
            "randomized faults: round {} of {rounds} exact ({failures} failed calls so far)",
            round + 1
        );
    }
    let late = late.lock().unwrap().len();
    eprintln!(
        "randomized faults: {rounds} rounds, {failures} failed calls, {late} late deliveries, 0 mismatches"
    );
}

#[test]
fn statement_timeout_interrupts_a_request_in_flight_mid_transaction() {
    let sqld = Sqld::start("inflight", false);
    let (mut c, slot) = setup("inflight");
    c.batch_execute("INSERT INTO k SELECT g, 'v', g FROM generate_series(1, 3000) g")
        .unwrap();
    // Request 0 reads progress, 1 the table shapes; 2.. are the transaction's parts: the
    // second part hangs while the plugin goes on decoding, and is waited for at the next part.
    let proxy = Proxy::start(sqld.port, |n| {
        if n == 3 {
            Action::Delay(Duration::from_secs(60))
        } else {
            Action::Forward
        }
    });
    c.batch_execute("SET statement_timeout = '1500ms'").unwrap();
    let start = Instant::now();
    let err = get_changes(
        &mut c,
        &slot,
        &[("url", &proxy.url()), ("max_request_records", "500")],
    )
    .unwrap_err();
    assert_eq!(db_error(&err).0, "57014");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "cancel took {:?}",
        start.elapsed()
    );
    c.batch_execute("RESET statement_timeout").unwrap();
    assert_another_writer_gets_through(&sqld);
    assert!(
        !sqld.table_exists("k"),
        "nothing of the interrupted transaction is visible"
    );
    get_changes(&mut c, &slot, &[("url", &sqld.url())]).unwrap();
    assert_exact(&mut c, &sqld);
}

/// Another writer of the Turso database gets through at once: no Turso transaction of pgturso
/// is left open holding the write lock (sqld would keep it until the stream expires, about 10 s).
fn assert_another_writer_gets_through(sqld: &Sqld) {
    let start = Instant::now();
    sqld.query("CREATE TABLE IF NOT EXISTS other_writer(x)");
    sqld.query("INSERT INTO other_writer VALUES (1)");
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "the other writer waited {took:?} for Turso's write lock"
    );
}

/// A request delayed past `timeout_ms` is resent at once; when the first attempt is delivered
/// after all, after newer transactions of the same rows, Turso refuses it (the progress guard):
/// no duplicate in the keyless table, no row brought back or overwritten, and the progress row
/// does not move back, so later transactions still arrive.
#[test]
fn a_request_delivered_after_its_resend_and_newer_transactions_is_a_no_op() {
    let sqld = Sqld::start("late", false);
    let (mut c, slot) = setup("late");
    c.batch_execute(
        "INSERT INTO k VALUES (1, 'first', 1), (2, 'first', 2); INSERT INTO log VALUES (1, 'first');",
    )
    .unwrap();
    c.batch_execute("UPDATE k SET v = 'second', n = n + 10; INSERT INTO log VALUES (2, 'second')")
        .unwrap();
    c.batch_execute("DELETE FROM k WHERE id = 2; UPDATE log SET v = 'third' WHERE n = 1")
        .unwrap();
    let landed = Arc::new(AtomicBool::new(false));
    let flag = landed.clone();
    // Request 0 reads progress, 1 the table shapes, 2 is the first transaction: held for 2 s,
    // well past timeout_ms, then delivered anyway.
    let proxy = Proxy::start(sqld.port, move |n| {
        if n == 2 {
            Action::Late(Duration::from_secs(2), flag.clone())
        } else {
            Action::Forward
        }
    });
    let out = get_changes(
        &mut c,
        &slot,
        &[
            ("url", &proxy.url()),
            ("timeout_ms", "500"),
            ("retry_ms", "20000"),
        ],
    )
    .unwrap();
    assert_eq!(out.len(), 3, "{out:?}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !landed.load(Ordering::SeqCst) {
        assert!(
            Instant::now() < deadline,
            "the delayed request was never delivered"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_exact(&mut c, &sqld);
    c.batch_execute("UPDATE k SET v = 'fourth'; INSERT INTO log VALUES (4, 'fourth')")
        .unwrap();
    get_changes(&mut c, &slot, &[("url", &sqld.url())]).unwrap();
    assert_exact(&mut c, &sqld);
}

/// A Turso failure in the middle of a transaction that spans several requests: the ERROR rolls
/// back the Turso transaction its first requests opened, at once.
#[test]
fn an_error_mid_transaction_releases_turso_at_once() {
    let sqld = Sqld::start("midfail", false);
    let (mut c, slot) = setup("midfail");
    c.batch_execute("INSERT INTO k SELECT g, 'v', g FROM generate_series(1, 3000) g")
        .unwrap();
    // Request 2 opens the transaction's stream; its next part is refused for good.
    let proxy = Proxy::start(sqld.port, |n| {
        if n == 3 {
            Action::Respond(400, "{\"error\":\"injected\"}".into())
        } else {
            Action::Forward
        }
    });
    let err = get_changes(
        &mut c,
        &slot,
        &[("url", &proxy.url()), ("max_request_records", "500")],
    )
    .unwrap_err();
    assert!(db_error(&err).1.contains("HTTP 400"), "{err}");
    assert_another_writer_gets_through(&sqld);
    assert!(!sqld.table_exists("k"), "nothing of it is visible");
    get_changes(&mut c, &slot, &[("url", &sqld.url())]).unwrap();
    assert_exact(&mut c, &sqld);
}
