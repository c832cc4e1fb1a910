//! End-to-end test of continuous replication across a restart of PostgreSQL: with `pgturso` in
//! `shared_preload_libraries`, the launcher starts the worker of every replication that is not
//! stopped. A test binary of its own, because it restarts its cluster.

mod common;

use std::time::Duration;

use common::{one, pg, pg_rows, preload_pgturso, wait_until, Sqld};

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
    pg_rows(c, "SELECT id::text FROM t ORDER BY id")
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
    one(&mut c, "SELECT turso_stop('app', drop => true)").unwrap();
    one(&mut c, "SELECT turso_stop('stopped', drop => true)").unwrap();
}
