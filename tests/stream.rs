//! End-to-end tests of transactions PostgreSQL streams to pgturso while they are in progress:
//! applied as they are decoded, demoted to their spool when another transaction commits first,
//! cut back by rolled-back subtransactions, rolled back in Turso when a call ends before their
//! commit, and applied once however often they are decoded.

mod common;

use common::setup_slot as setup;
use common::{
    assert_mirror, assert_mirror_as, get_changes, pg, pg_rows, spawn_recvlogical, wait_for_sqld,
    Sqld,
};
use std::time::{Duration, Instant};

/// The slot's streaming and spilling counters (`stream_txns`, `spill_txns`), once the decoding
/// backend has reported them.
fn slot_stats(c: &mut postgres::Client, slot: &str) -> (i64, i64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (streamed, spilled) = slot_stats_now(c, slot);
        if streamed + spilled > 0 || Instant::now() > deadline {
            return (streamed, spilled);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The slot's `(stream_txns, spill_txns)` as reported so far.
fn slot_stats_now(c: &mut postgres::Client, slot: &str) -> (i64, i64) {
    let r = pg_rows(
        c,
        &format!("SELECT stream_txns, spill_txns FROM pg_stat_replication_slots WHERE slot_name = '{slot}'"),
    );
    let n = |i: usize| r[0][i].as_deref().unwrap().parse::<i64>().unwrap();
    (n(0), n(1))
}

fn opts<'a>(url: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut o = vec![("url", url), ("decoding_work_mem", "64kB")];
    o.extend_from_slice(extra);
    o
}

/// A 30,000-change transaction with nested subtransactions, some rolled back, decoded with
/// 64 kB of decoding memory: PostgreSQL streams it, nothing spills, Turso ends equal.
#[test]
fn a_large_transaction_is_streamed_and_arrives_exactly() {
    let sqld = Sqld::start("stream_big", false);
    let (mut c, slot) = setup("stream_big");
    c.batch_execute(
        "CREATE TABLE s(id int primary key, v text, n int, f float8, b bytea);
         BEGIN;
         INSERT INTO s SELECT g, 'row ' || g, g % 7, g / 7.0, decode(md5(g::text), 'hex')
           FROM generate_series(1, 10000) g;
         SAVEPOINT a;
         UPDATE s SET v = v || ' kept', n = n + 1 WHERE id % 3 = 0;
         SAVEPOINT b;
         DELETE FROM s WHERE id % 5 = 0;
         INSERT INTO s SELECT g, 'gone', 0, 0, NULL FROM generate_series(20001, 23000) g;
         ROLLBACK TO SAVEPOINT b;
         INSERT INTO s SELECT g, 'after b', 1, -1.5, NULL FROM generate_series(30001, 33000) g;
         RELEASE SAVEPOINT a;
         SAVEPOINT c;
         UPDATE s SET v = 'rolled back' WHERE id <= 4000;
         ROLLBACK TO SAVEPOINT c;
         DELETE FROM s WHERE id % 11 = 0;
         UPDATE s SET f = -f WHERE id % 4 = 0;
         COMMIT;",
    )
    .unwrap();
    let url = sqld.url();
    let out = get_changes(&mut c, &slot, &opts(&url, &[])).unwrap();
    assert_eq!(out.len(), 1, "{out:?}");
    assert_mirror_as(
        &mut c,
        &sqld,
        "s",
        "id, v, n, floor(f * 1000)::int8, coalesce(upper(encode(b, 'hex')), '')",
        "id, v, n, CAST(floor(f * 1000) AS INTEGER), hex(b)",
    );
    assert!(sqld
        .query("SELECT 1 FROM s WHERE v IN ('gone', 'rolled back')")
        .is_empty());
    let (streamed, spilled) = slot_stats(&mut c, &slot);
    assert!(streamed >= 1, "the transaction was streamed: {streamed}");
    assert_eq!(spilled, 0, "a streamed transaction does not spill");
    // The server's setting is back once the call is over.
    assert_eq!(
        pg_rows(&mut c, "SHOW logical_decoding_work_mem")[0][0].as_deref(),
        Some("64MB")
    );
    // And so is the session's own, once a call that lowered it is over.
    c.batch_execute(
        "SET logical_decoding_work_mem = '2MB'; INSERT INTO s VALUES (-1, 'x', 0, 0, NULL)",
    )
    .unwrap();
    get_changes(&mut c, &slot, &opts(&url, &[])).unwrap();
    assert_eq!(
        pg_rows(&mut c, "SHOW logical_decoding_work_mem")[0][0].as_deref(),
        Some("2MB")
    );
}

/// A call that fails inside a transaction leaves the decoding memory as the transaction's
/// rollback leaves it: the value from before the transaction, not one set inside it.
#[test]
fn a_failed_call_leaves_the_decoding_memory_to_the_rollback() {
    let (mut c, slot) = setup("stream_fail_mem");
    c.batch_execute("CREATE TABLE f(id int primary key); INSERT INTO f VALUES (1)")
        .unwrap();
    let closed = format!("http://127.0.0.1:{}/", common::free_port());
    c.batch_execute("BEGIN; SET logical_decoding_work_mem = '2MB'")
        .unwrap();
    let err = get_changes(&mut c, &slot, &opts(&closed, &[("retry_ms", "0")])).unwrap_err();
    assert_eq!(
        common::db_error(&err).0,
        "08006",
        "Turso is unreachable: {err}"
    );
    c.batch_execute("ROLLBACK").unwrap();
    assert_eq!(
        pg_rows(&mut c, "SHOW logical_decoding_work_mem")[0][0].as_deref(),
        Some("64MB")
    );
}

/// pg_recvlogical keeps pgturso's decoding memory through a configuration reload (the reload
/// sets the server's value in every backend; pgturso's is a session-level setting that a reload
/// does not override): a large transaction after the reload is still streamed.
#[test]
fn a_walsender_keeps_its_decoding_memory_through_a_reload() {
    let sqld = Sqld::start("stream_reload", false);
    let (mut c, slot) = setup("stream_reload");
    c.batch_execute(
        "CREATE TABLE r(id int primary key, v text); INSERT INTO r VALUES (0, 'first')",
    )
    .unwrap();
    let url = sqld.url();
    let mut child = spawn_recvlogical(
        "stream_reload",
        &slot,
        &[format!("url={url}"), "decoding_work_mem=64kB".into()],
    );
    // The first change is decoded: the session's setting is in effect.
    wait_for_sqld(&sqld, "r", "SELECT count(*) FROM r", 1);
    // A reload with the server's value written in the configuration file (the same value, so
    // the other tests of this cluster see no change).
    c.batch_execute("ALTER SYSTEM SET logical_decoding_work_mem = '64MB'")
        .unwrap();
    c.batch_execute("SELECT pg_reload_conf()").unwrap();
    // The walsender handles the reload when it wakes up, at the latest for the next commit.
    std::thread::sleep(Duration::from_millis(500));
    c.batch_execute("INSERT INTO r VALUES (1, 'after the reload')")
        .unwrap();
    wait_for_sqld(&sqld, "r", "SELECT count(*) FROM r", 2);
    let before = slot_stats_now(&mut c, &slot);
    c.batch_execute("INSERT INTO r SELECT g, repeat('x', 100) FROM generate_series(2, 20001) g")
        .unwrap();
    wait_for_sqld(&sqld, "r", "SELECT count(*) FROM r", 20002);
    let _ = child.kill();
    let _ = child.wait();
    c.batch_execute("ALTER SYSTEM RESET logical_decoding_work_mem")
        .unwrap();
    c.batch_execute("SELECT pg_reload_conf()").unwrap();
    // The walsender reports its statistics when it exits.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut after = slot_stats_now(&mut c, &slot);
    while after.0 == before.0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        after = slot_stats_now(&mut c, &slot);
    }
    assert!(
        after.0 > before.0,
        "the large transaction after the reload was streamed: stream_txns {before:?} -> {after:?}"
    );
    assert_mirror(&mut c, &sqld, "r", "id, v");
}

/// Small transactions commit while a large one is being written: they reach Turso first, in
/// their commit order, and the large one arrives whole after them.
#[test]
fn transactions_committing_during_a_streamed_one_go_first() {
    let sqld = Sqld::start("stream_mix", false);
    let (mut c, slot) = setup("stream_mix");
    c.batch_execute(
        "CREATE TABLE big(id int primary key, v text);
         CREATE TABLE small(id int primary key, v text);",
    )
    .unwrap();
    let mut other = pg().connect("stream_mix");
    c.batch_execute("BEGIN; INSERT INTO big SELECT g, 'a' || g FROM generate_series(1, 8000) g")
        .unwrap();
    other
        .batch_execute("INSERT INTO small VALUES (1, 'first')")
        .unwrap();
    c.batch_execute("INSERT INTO big SELECT g, 'b' || g FROM generate_series(8001, 16000) g")
        .unwrap();
    other
        .batch_execute(
            "INSERT INTO small VALUES (2, 'second'); UPDATE small SET v = 'first!' WHERE id = 1",
        )
        .unwrap();
    c.batch_execute("UPDATE big SET v = v || '+' WHERE id % 2 = 0; COMMIT")
        .unwrap();
    let url = sqld.url();
    let out = get_changes(&mut c, &slot, &opts(&url, &[])).unwrap();
    let counts: Vec<&str> = out.iter().map(|l| l.rsplit(": ").next().unwrap()).collect();
    assert_eq!(
        counts,
        ["1 change", "2 changes", "24000 changes"],
        "{out:?}"
    );
    assert_mirror(&mut c, &sqld, "big", "id, v");
    assert_mirror(&mut c, &sqld, "small", "id, v");
    assert!(
        slot_stats(&mut c, &slot).0 >= 1,
        "the big transaction was streamed"
    );
}

/// A call that ends while a streamed transaction is still running leaves nothing of it in Turso,
/// and does not hold Turso's write lock: the next call applies it whole once it commits.
#[test]
fn a_transaction_still_running_when_the_call_ends_arrives_whole_after_its_commit() {
    let sqld = Sqld::start("stream_open", false);
    let (mut c, slot) = setup("stream_open");
    c.batch_execute(
        "CREATE TABLE t(id int primary key, v text);
         INSERT INTO t VALUES (0, 'before')",
    )
    .unwrap();
    let url = sqld.url();
    get_changes(&mut c, &slot, &opts(&url, &[])).unwrap();
    let mut writer = pg().connect("stream_open");
    writer
        .batch_execute("BEGIN; INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 20000) g")
        .unwrap();
    // Uncommitted WAL may still sit in WAL buffers: decoding reads only what is flushed.
    c.batch_execute("SELECT pg_switch_wal()").unwrap();
    let out = get_changes(&mut c, &slot, &opts(&url, &[])).unwrap();
    assert!(out.is_empty(), "{out:?}");
    let stats = slot_stats(&mut c, &slot);
    assert!(
        stats.0 >= 1,
        "the running transaction was streamed: {stats:?}"
    );
    assert_eq!(
        sqld.query_text("SELECT count(*) FROM t"),
        [[Some("1".to_string())]]
    );
    // Another writer can use Turso meanwhile: pgturso did not leave its transaction open.
    let started = Instant::now();
    sqld.query("INSERT INTO t VALUES (-1, 'other writer')");
    assert!(started.elapsed() < Duration::from_secs(3));
    sqld.query("DELETE FROM t WHERE id = -1");
    writer
        .batch_execute("UPDATE t SET v = v || '!' WHERE id % 2 = 0; COMMIT")
        .unwrap();
    let out = get_changes(&mut c, &slot, &opts(&url, &[])).unwrap();
    assert_eq!(out.len(), 1, "{out:?}");
    // 20,000 inserts and 10,001 updates (row 0 included).
    assert!(out[0].ends_with(": 30001 changes"), "{out:?}");
    assert_mirror(&mut c, &sqld, "t", "id, v");
}

/// Peeking does not move the slot, so the next call decodes and streams the same transaction
/// again: Turso has it by then, and it is rolled back rather than applied twice.
#[test]
fn a_streamed_transaction_decoded_twice_is_applied_once() {
    let sqld = Sqld::start("stream_twice", false);
    let (mut c, slot) = setup("stream_twice");
    c.batch_execute(
        "CREATE TABLE t(id int primary key, n int);
         INSERT INTO t SELECT g, 0 FROM generate_series(1, 5000) g;",
    )
    .unwrap();
    c.batch_execute(
        "BEGIN;
         UPDATE t SET n = n + 1;
         DELETE FROM t WHERE id % 10 = 0;
         INSERT INTO t SELECT g, 100 FROM generate_series(5001, 9000) g;
         COMMIT;",
    )
    .unwrap();
    let url = sqld.url();
    let peek = |c: &mut postgres::Client| -> Vec<String> {
        pg_rows(
            c,
            &format!(
                "SELECT data FROM pg_logical_slot_peek_changes('{slot}', NULL, NULL, 'url', '{url}', 'decoding_work_mem', '64kB')"
            ),
        )
        .into_iter()
        .map(|r| r[0].clone().unwrap())
        .collect()
    };
    let first = peek(&mut c);
    assert_eq!(first.len(), 2, "{first:?}");
    assert_mirror(&mut c, &sqld, "t", "id, n");
    sqld.query("UPDATE t SET n = -1 WHERE id = 1");
    assert!(
        peek(&mut c).is_empty(),
        "both transactions are in Turso already"
    );
    assert_eq!(
        sqld.query_text("SELECT n FROM t WHERE id = 1"),
        [[Some("-1".to_string())]],
        "nothing was applied again"
    );
}

/// A streamed transaction with a key swap, decoded again because the slot did not advance (a
/// peek): Turso has it already, so it must not be applied directly onto its own result (the swap
/// would then fail on the key at every call); it is decided at its commit and skipped.
#[test]
fn a_streamed_key_swap_decoded_again_is_not_applied_onto_itself() {
    let sqld = Sqld::start("stream_swap", false);
    let (mut c, slot) = setup("stream_swap");
    c.batch_execute(
        "CREATE TABLE t(id int primary key, n int);
         CREATE TABLE filler(id int primary key, pad text);
         INSERT INTO t VALUES (1, 10), (2, 20), (3, 30);",
    )
    .unwrap();
    get_changes(&mut c, &slot, &opts(&sqld.url(), &[])).unwrap();
    c.batch_execute(
        "BEGIN;
         INSERT INTO filler SELECT g, repeat('x', 100) FROM generate_series(1, 3000) g;
         UPDATE t SET id = 4 WHERE id = 3;
         UPDATE t SET id = 3 WHERE id = 2;
         INSERT INTO filler SELECT g, repeat('y', 100) FROM generate_series(3001, 6000) g;
         COMMIT;",
    )
    .unwrap();
    let url = sqld.url();
    let peek = |c: &mut postgres::Client| -> Result<Vec<String>, postgres::Error> {
        c.query(
            &format!(
                "SELECT data FROM pg_logical_slot_peek_changes('{slot}', NULL, NULL, 'url', '{url}', 'decoding_work_mem', '64kB')"
            ),
            &[],
        )
        .map(|rows| rows.iter().map(|r| r.get::<_, String>(0)).collect())
    };
    assert_eq!(peek(&mut c).unwrap().len(), 1);
    assert!(
        slot_stats(&mut c, &slot).0 > 0,
        "the transaction was streamed"
    );
    assert_mirror(&mut c, &sqld, "t", "id, n");
    for _ in 0..2 {
        let again = peek(&mut c).unwrap_or_else(|e| panic!("decoding it again failed: {e:?}"));
        assert!(again.is_empty(), "Turso has it already: {again:?}");
    }
    assert_mirror(&mut c, &sqld, "t", "id, n");
    assert_mirror(&mut c, &sqld, "filler", "id, pad");
    get_changes(&mut c, &slot, &opts(&sqld.url(), &[])).unwrap();
    c.batch_execute("UPDATE t SET n = n + 1").unwrap();
    get_changes(&mut c, &slot, &opts(&sqld.url(), &[])).unwrap();
    assert_mirror(&mut c, &sqld, "t", "id, n");
}

/// With `streaming` off the same transaction spills to disk in PostgreSQL and arrives the same.
#[test]
fn streaming_off_spills_instead() {
    let sqld = Sqld::start("stream_off", false);
    let (mut c, slot) = setup("stream_off");
    c.batch_execute(
        "CREATE TABLE t(id int primary key, v text);
         INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 20000) g;",
    )
    .unwrap();
    let url = sqld.url();
    let out = get_changes(&mut c, &slot, &opts(&url, &[("streaming", "off")])).unwrap();
    assert_eq!(out.len(), 1, "{out:?}");
    assert_mirror(&mut c, &sqld, "t", "id, v");
    assert_eq!(slot_stats(&mut c, &slot), (0, 1));
}
