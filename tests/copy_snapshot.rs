//! End-to-end: the initial copy misses no transaction that committed just before the slot's
//! consistent point but was still running in the ProcArray (held there by a synchronous standby
//! that never answers). Its own test binary, because it sets synchronous_standby_names.

mod common;

use std::time::{Duration, Instant};

use common::{pg, pg_rows, Sqld};

fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The wait event of backend `pid`, if any.
fn wait_event(c: &mut postgres::Client, pid: i32) -> Option<String> {
    pg_rows(
        c,
        &format!("SELECT wait_event FROM pg_stat_activity WHERE pid = {pid}"),
    )
    .into_iter()
    .next()
    .and_then(|r| r[0].clone())
}

/// Whether backend `pid` waits for the transaction lock of `xid`.
fn waits_on(c: &mut postgres::Client, pid: i32, xid: &str) -> bool {
    !pg_rows(
        c,
        &format!(
            "SELECT 1 FROM pg_locks WHERE pid = {pid} AND NOT granted AND locktype = 'transactionid' AND transactionid::text = '{xid}'"
        ),
    )
    .is_empty()
}

fn session(db: &str) -> (postgres::Client, i32) {
    let mut c = pg().connect(db);
    c.batch_execute("SET synchronous_commit = local").unwrap();
    let pid: i32 = c.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    (c, pid)
}

fn xid(c: &mut postgres::Client) -> String {
    c.query_one("SELECT txid_current()::text", &[])
        .unwrap()
        .get(0)
}

#[test]
fn a_transaction_held_by_a_synchronous_standby_at_the_consistent_point_is_copied() {
    let sqld = Sqld::start("syncrep", false);
    let mut admin = pg().fresh_db("syncrep");
    admin
        .batch_execute(&format!(
            "CREATE EXTENSION pgturso;
             CREATE FUNCTION turso_url() RETURNS text LANGUAGE sql AS $$ SELECT '{}' $$;
             CREATE FUNCTION turso_token() RETURNS text LANGUAGE sql AS $$ SELECT '' $$;
             CREATE TABLE t(id int primary key, v text);
             CREATE TABLE side(x int);
             INSERT INTO t VALUES (1, 'before');",
            sqld.url()
        ))
        .unwrap();
    // One statement each: ALTER SYSTEM cannot run in the implicit transaction of a batch.
    admin
        .batch_execute("ALTER SYSTEM SET synchronous_standby_names = 'ghost'")
        .unwrap();
    admin.batch_execute("SELECT pg_reload_conf()").unwrap();
    admin
        .batch_execute("SET synchronous_commit = local")
        .unwrap();
    let (mut a, _) = session("syncrep");
    let (mut b, _) = session("syncrep");
    // A holds a transaction open, so the slot's snapshot builder has to wait for it.
    a.batch_execute("BEGIN; INSERT INTO side VALUES (1)")
        .unwrap();
    let a_xid = xid(&mut a);
    let (s_tx, s_rx) = std::sync::mpsc::channel();
    let copier = std::thread::spawn(move || {
        let (mut s, pid) = session("syncrep");
        s_tx.send(pid).unwrap();
        s.query_one("SELECT turso_replicate_table('t')::text", &[])
            .map(|r| r.get::<_, String>(0))
    });
    let s_pid = s_rx.recv().unwrap();
    wait_for("the slot to wait for A", || {
        waits_on(&mut admin, s_pid, &a_xid)
    });
    // B starts after that; when A ends, the builder has a full snapshot and waits for B.
    b.batch_execute("BEGIN; INSERT INTO side VALUES (2)")
        .unwrap();
    let b_xid = xid(&mut b);
    a.batch_execute("COMMIT").unwrap();
    wait_for("the slot to wait for B", || {
        waits_on(&mut admin, s_pid, &b_xid)
    });
    // X starts after the full snapshot and commits: its commit record is written, and the
    // synchronous standby that never answers keeps it in the ProcArray.
    let x = std::thread::spawn(|| {
        let mut x = pg().connect("syncrep");
        x.batch_execute("INSERT INTO t VALUES (2, 'held by the standby')")
            .unwrap();
    });
    wait_for("X to wait for the standby", || {
        pg_rows(
            &mut admin,
            "SELECT 1 FROM pg_stat_activity WHERE wait_event = 'SyncRep'",
        )
        .len()
            == 1
    });
    // B ends: the next running-transactions record shows only X, the consistent point.
    b.batch_execute("COMMIT").unwrap();
    // Either the copy is done already (without X), or it waits for X to end: only then is the
    // standby let go.
    wait_for("the copy to finish or to wait for X", || {
        copier.is_finished() || wait_event(&mut admin, s_pid).as_deref() == Some("PgSleep")
    });
    eprintln!(
        "copy finished before X was let go: {}",
        copier.is_finished()
    );
    admin
        .batch_execute("ALTER SYSTEM RESET synchronous_standby_names")
        .unwrap();
    admin.batch_execute("SELECT pg_reload_conf()").unwrap();
    x.join().unwrap();
    let copied = copier.join().unwrap().unwrap();
    let mut c = pg().connect("syncrep");
    c.batch_execute("INSERT INTO t VALUES (3, 'after')")
        .unwrap();
    c.query_one("SELECT turso_replicate_table('t')", &[])
        .unwrap();
    let ids: Vec<i64> = sqld
        .query("SELECT id FROM t ORDER BY id")
        .into_iter()
        .map(|r| r[0].as_i64().unwrap())
        .collect();
    assert_eq!(
        ids,
        [1, 2, 3],
        "Turso must hold X (row 2), in the copy or decoded (the copy sent {copied} rows)"
    );
}
