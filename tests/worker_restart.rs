//! End-to-end test of continuous replication across a restart of PostgreSQL: with `pgturso` in
//! `shared_preload_libraries`, the launcher starts the worker of every replication that is not
//! stopped, also after a crash under load. A test binary of its own, because it restarts its
//! cluster.

mod common;

use std::time::Duration;

use common::{one, pg, pg_rows, preload_pgturso, wait_until, Load, Sqld};

/// Continuous replication is quick: 90 s is only the bound of a failure.
fn wait_for(what: &str, ok: impl FnMut() -> bool) {
    wait_until(what, Duration::from_secs(90), ok)
}

fn turso_ids(sqld: &Sqld) -> Vec<Vec<Option<String>>> {
    if !sqld.table_exists("t") {
        return vec![];
    }
    sqld.query_text("SELECT id FROM t ORDER BY id")
}

fn pg_ids(c: &mut postgres::Client) -> Vec<Vec<Option<String>>> {
    // By the number, as Turso orders them (the text column named id would order as text).
    pg_rows(c, "SELECT id::text FROM t ORDER BY t.id")
}

type Rows = Vec<Vec<Option<String>>>;

/// The keyless `events` as a sorted multiset, in Turso and in PostgreSQL.
fn events(c: &mut postgres::Client, sqld: &Sqld) -> (Rows, Rows) {
    let turso = if sqld.table_exists("events") {
        let mut rows = sqld.query_text("SELECT v FROM events");
        rows.sort();
        rows
    } else {
        vec![]
    };
    let mut pg = pg_rows(c, "SELECT v FROM events");
    pg.sort();
    (turso, pg)
}

#[test]
fn the_launcher_starts_the_workers_again_after_a_restart() {
    let sqld = Sqld::start("restart", true);
    preload_pgturso(&mut pg().connect("postgres"));
    let mut c = pg().fresh_db("restart");
    c.batch_execute(&format!(
        "CREATE EXTENSION pgturso;
         CREATE FUNCTION turso_url() RETURNS text LANGUAGE sql AS $$ SELECT '{}' $$;
         CREATE FUNCTION turso_token() RETURNS text LANGUAGE sql AS $$ SELECT '{}' $$;
         CREATE TABLE t(id int PRIMARY KEY);
         CREATE TABLE u(id int PRIMARY KEY);
         INSERT INTO t VALUES (1);
         CREATE PUBLICATION app FOR TABLE t;
         CREATE PUBLICATION stopped FOR TABLE u;",
        sqld.url(),
        sqld.token()
    ))
    .unwrap();
    one(&mut c, "SELECT turso_start('app')").unwrap();
    one(&mut c, "SELECT turso_start('stopped')").unwrap();
    one(&mut c, "SELECT turso_stop('stopped')").unwrap();
    c.batch_execute("INSERT INTO t VALUES (2)").unwrap();
    wait_for("the worker", || turso_ids(&sqld) == pg_ids(&mut c));
    drop(c);
    pg().stop();
    pg().start();
    let mut c = pg().connect("restart");
    c.batch_execute("INSERT INTO t VALUES (3)").unwrap();
    wait_for("the worker started by the launcher", || {
        turso_ids(&sqld) == pg_ids(&mut c)
    });
    assert_eq!(turso_ids(&sqld).len(), 3);
    let workers = || {
        "SELECT application_name FROM pg_stat_activity WHERE backend_type = 'pgturso publication' ORDER BY 1"
    };
    wait_for("the starter to finish", || {
        one(
            &mut c,
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type IN ('pgturso starter', 'pgturso launcher')",
        )
        .as_deref()
            == Some("0")
    });
    let running = pg_rows(&mut c, workers());
    assert_eq!(
        running.len(),
        1,
        "the stopped replication stays stopped: {running:?}"
    );
    // PostgreSQL crashes (-m immediate) while an application writes: a slot position not yet
    // saved to disk is lost, so transactions already in Turso may be decoded again (Turso's
    // progress row skips them). Turso ends equal, with no duplicate in the keyless table.
    c.batch_execute(
        "CREATE TABLE events(v text);
         ALTER TABLE events REPLICA IDENTITY FULL;
         ALTER PUBLICATION app ADD TABLE events;",
    )
    .unwrap();
    let load = Load::start("restart", Duration::from_millis(10), |i| {
        let mut sql = format!(
            "INSERT INTO t VALUES ({}); INSERT INTO events VALUES ('e{}');",
            1000 + i,
            i / 2
        );
        if i.is_multiple_of(5) && i >= 10 {
            sql += &format!(
                "DELETE FROM t WHERE id = {}; DELETE FROM events WHERE v = 'e{}';",
                1000 + i - 7,
                i / 2 - 3
            );
        }
        sql
    });
    wait_for("the load in Turso", || {
        sqld.table_exists("events") && !events(&mut c, &sqld).0.is_empty()
    });
    drop(c);
    std::thread::sleep(Duration::from_secs(2));
    pg().crash();
    pg().start();
    std::thread::sleep(Duration::from_secs(3));
    let committed = load.stop();
    assert!(
        committed > 100,
        "the load committed {committed} transactions"
    );
    let mut c = pg().connect("restart");
    wait_for("Turso equal after the crash", || {
        let (turso, pg) = events(&mut c, &sqld);
        turso == pg && turso_ids(&sqld) == pg_ids(&mut c)
    });
    assert!(
        one(&mut c, "SELECT count(*) FROM t")
            .unwrap()
            .parse::<i64>()
            .unwrap()
            > 100,
        "the load's rows survived the crash"
    );
    one(&mut c, "SELECT turso_stop('app', drop => true)").unwrap();
    one(&mut c, "SELECT turso_stop('stopped', drop => true)").unwrap();
}
