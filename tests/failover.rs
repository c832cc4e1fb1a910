//! End-to-end test of a switchover to a physical standby (PostgreSQL 17 and later): pgturso's
//! slot is a failover slot, the standby keeps a synchronized copy of it, and after the standby's
//! promotion its worker carries on from that copy, so Turso ends up with exactly the new
//! primary's rows. A test binary of its own, because it stops its cluster.

mod common;

use std::time::Duration;

use common::{one, pg, pg_rows, preload_pgturso, wait_until, Sqld};

fn wait_for(what: &str, ok: impl FnMut() -> bool) {
    wait_until(what, Duration::from_secs(120), ok)
}

fn turso_rows(sqld: &Sqld) -> Vec<Vec<Option<String>>> {
    if !sqld.table_exists("accounts") {
        return vec![];
    }
    sqld.query_text("SELECT id, balance FROM accounts ORDER BY id")
}

fn pg_accounts(c: &mut postgres::Client) -> Vec<Vec<Option<String>>> {
    pg_rows(
        c,
        "SELECT id::text, balance::text FROM accounts ORDER BY accounts.id",
    )
}

/// Turso's accounts are PostgreSQL's (through `c`); a difference is printed.
fn mirrored(sqld: &Sqld, c: &mut postgres::Client) -> bool {
    let (turso, pg) = (turso_rows(sqld), pg_accounts(c));
    if turso != pg {
        let first = turso.iter().zip(&pg).find(|(a, b)| a != b);
        eprintln!(
            "not yet: Turso {} rows, PostgreSQL {}; first difference: {first:?}",
            turso.len(),
            pg.len()
        );
    }
    turso == pg
}

#[test]
#[cfg_attr(
    not(any(feature = "pg17", feature = "pg18")),
    ignore = "failover slots exist from PostgreSQL 17 on"
)]
fn after_a_switchover_the_promoted_standby_replicates_on_exactly() {
    let sqld = Sqld::start("failover", true);
    let mut admin = pg().connect("postgres");
    preload_pgturso(&mut admin);
    // The standby's physical slot, and logical decoding never ahead of that standby: what Turso
    // has, the standby has too.
    for sql in [
        "SELECT pg_create_physical_replication_slot('pgturso_standby', true)",
        "ALTER SYSTEM SET synchronized_standby_slots = 'pgturso_standby'",
    ] {
        admin.batch_execute(sql).unwrap();
    }
    drop(admin);
    pg().stop();
    pg().start();
    let mut c = pg().fresh_db("failover");
    let standby = pg().standby(
        "standby",
        "pgturso_standby",
        // Its base backup carries the primary's synchronized_standby_slots: as a primary it
        // has no standby of its own.
        "sync_replication_slots = on\nhot_standby_feedback = on\nsynchronized_standby_slots = ''",
    );
    c.batch_execute(&format!(
        "CREATE EXTENSION pgturso;
         CREATE FUNCTION turso_url() RETURNS text LANGUAGE sql AS $$ SELECT '{}' $$;
         CREATE FUNCTION turso_token() RETURNS text LANGUAGE sql AS $$ SELECT '{}' $$;
         CREATE TABLE accounts(id int PRIMARY KEY, balance int NOT NULL);
         INSERT INTO accounts SELECT g, 100 FROM generate_series(1, 100) g;
         CREATE PUBLICATION app FOR TABLE accounts;",
        sqld.url(),
        sqld.token()
    ))
    .unwrap();
    one(&mut c, "SELECT turso_start('app')").unwrap();
    assert_eq!(
        one(
            &mut c,
            "SELECT string_agg(failover::text, ',') FROM pg_replication_slots WHERE slot_name LIKE 'pgturso_pub_%'"
        )
        .as_deref(),
        Some("true"),
        "the worker's slot is a failover slot"
    );
    wait_for("the initial copy", || mirrored(&sqld, &mut c));
    let mut s = standby.connect("failover");
    c.batch_execute("CREATE TABLE noise(x int)").unwrap();
    wait_for("the standby's synchronized copy of the slot", || {
        // The standby takes the slot over only once its catalog xmin is one the standby still
        // keeps: transactions and a logged snapshot let decoding move it on.
        c.batch_execute("INSERT INTO noise VALUES (1); SELECT pg_log_standby_snapshot()")
            .unwrap();
        one(
            &mut s,
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'pgturso_pub_%' AND synced AND NOT temporary",
        )
        .as_deref()
            == Some("1")
    });
    c.batch_execute(
        "UPDATE accounts SET balance = balance + 1 WHERE id <= 50;
         INSERT INTO accounts SELECT g, 0 FROM generate_series(101, 150) g;",
    )
    .unwrap();
    wait_for("the old primary's worker", || mirrored(&sqld, &mut c));
    // Changes right before the switchover: they may or may not reach Turso through the old
    // primary; either way they must arrive exactly once.
    c.batch_execute(
        "INSERT INTO accounts SELECT g, 1 FROM generate_series(151, 200) g;
         DELETE FROM accounts WHERE id % 10 = 0;",
    )
    .unwrap();
    drop(c);
    drop(s);
    pg().stop();
    standby.promote();
    let mut n = standby.connect("failover");
    n.batch_execute(
        "UPDATE accounts SET balance = balance * 2 WHERE id % 3 = 0;
         INSERT INTO accounts SELECT g, 7 FROM generate_series(201, 250) g;",
    )
    .unwrap();
    wait_for("the promoted standby's worker", || mirrored(&sqld, &mut n));
    assert_eq!(turso_rows(&sqld).len(), 230);
    // It replicated from the synchronized slot (none was created anew) and streams on without
    // an error.
    let row = pg_rows(
        &mut n,
        "SELECT (SELECT string_agg(synced::text, ',') FROM pg_replication_slots WHERE slot_name LIKE 'pgturso_pub_%'),
                (SELECT last_status || ' ' || coalesce(last_error, 'no error') FROM turso_replication_status WHERE kind = 'publication')",
    );
    assert_eq!(
        row[0],
        vec![Some("true".into()), Some("streaming no error".into())]
    );
    one(&mut n, "SELECT turso_stop('app', drop => true)").unwrap();
}
