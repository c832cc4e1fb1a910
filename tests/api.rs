//! End-to-end tests of the SQL API (`CREATE EXTENSION pgturso`): replication helpers, pg_cron
//! scheduling with the real pg_cron, initial sync, materialized views and the status view.

mod common;

use std::time::{Duration, Instant};

use common::{db_error, pg, pg_rows, Sqld};
use serde_json::json;

fn one(c: &mut postgres::Client, sql: &str) -> Option<String> {
    pg_rows(c, sql)
        .into_iter()
        .next()
        .and_then(|r| r.into_iter().next().flatten())
}

/// `turso_url()` and `turso_token()` pointing at `sqld`.
fn credentials(c: &mut postgres::Client, sqld: &Sqld) {
    c.batch_execute(&format!(
        "CREATE OR REPLACE FUNCTION turso_token() RETURNS text LANGUAGE SQL AS $$ SELECT '{}'; $$;
         CREATE OR REPLACE FUNCTION turso_url() RETURNS text LANGUAGE SQL AS $$ SELECT '{}'; $$;",
        sqld.token(),
        sqld.url()
    ))
    .unwrap();
}

/// A fresh database with the extension, credentials for `sqld` and table t holding (1, 'a').
fn db_with_one_row(name: &str, sqld: &Sqld) -> postgres::Client {
    let mut c = pg().fresh_db(name);
    credentials(&mut c, sqld);
    c.batch_execute(
        "CREATE EXTENSION pgturso;
         CREATE TABLE t(id int primary key, v text);
         INSERT INTO t VALUES (1, 'a');",
    )
    .unwrap();
    c
}

/// The README's least-privilege grants (section "Least privilege") for `role`, on table `table`:
/// no REPLICATION, no right on pgturso's state, no token.
fn least_privilege_role(c: &mut postgres::Client, role: &str, table: &str) {
    c.batch_execute(&format!(
        "DROP ROLE IF EXISTS {role};
         CREATE ROLE {role} LOGIN;
         GRANT EXECUTE ON FUNCTION turso_replicate_table(regclass), turso_replicate_mv(regclass),
             turso_schedule_table_replication(regclass, text), turso_schedule_mv_replication(regclass, text),
             turso_unschedule(text, boolean) TO {role};
         GRANT SELECT ON turso_replication_status TO {role};
         GRANT SELECT ON {table} TO {role};"
    ))
    .unwrap();
}

fn connect_as(user: &str, db: &str) -> postgres::Client {
    postgres::Client::connect(
        &format!("host=127.0.0.1 port={} user={user} dbname={db}", pg().port),
        postgres::NoTls,
    )
    .unwrap()
}

fn wait_for(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn count(sqld: &Sqld, table: &str) -> i64 {
    if !sqld.table_exists(table) {
        return -1;
    }
    sqld.query(&format!("SELECT count(*) FROM \"{table}\""))[0][0]
        .as_i64()
        .unwrap()
}

/// The example, verbatim, in the cron database; then the jobs run by themselves.
#[test]
fn verbatim_example_schedules_and_the_jobs_replicate_by_themselves() {
    let sqld = Sqld::start("cron", true);
    let mut c = pg().connect("postgres");
    c.batch_execute(
        "DROP EXTENSION IF EXISTS pgturso CASCADE; DROP SCHEMA IF EXISTS pgturso CASCADE;
         DROP MATERIALIZED VIEW IF EXISTS testview; DROP TABLE IF EXISTS t;",
    )
    .unwrap();
    c.batch_execute("CREATE TABLE IF NOT EXISTS t(id int PRIMARY KEY, v int, v1 text, v2 text)")
        .unwrap();
    c.batch_execute("INSERT INTO t SELECT g, g, 'a' || g, 'b' || g FROM generate_series(1, 50) g")
        .unwrap();
    c.batch_execute("CREATE MATERIALIZED VIEW testview AS SELECT id, v2 FROM t WHERE id <= 42")
        .unwrap();
    c.batch_execute(&format!(
        "CREATE OR REPLACE FUNCTION turso_token() RETURNS text LANGUAGE SQL AS $$ SELECT '{}'; $$;",
        sqld.token()
    ))
    .unwrap();
    c.batch_execute(&format!(
        "CREATE OR REPLACE FUNCTION turso_url() RETURNS text LANGUAGE SQL AS $$ SELECT '{}'; $$;",
        sqld.url()
    ))
    .unwrap();
    c.batch_execute("CREATE EXTENSION pgturso").unwrap();
    let job = one(
        &mut c,
        "SELECT turso_schedule_mv_replication('testview', '5 seconds')",
    )
    .unwrap();
    // Scheduling twice: same job, no second slot or job.
    let again = one(
        &mut c,
        "SELECT turso_schedule_mv_replication('testview', '5 seconds')",
    )
    .unwrap();
    assert_eq!(job, again);
    let table_job = one(
        &mut c,
        "SELECT turso_schedule_table_replication('t', '5 seconds')",
    )
    .unwrap();
    assert_eq!(
        one(
            &mut c,
            "SELECT turso_schedule_table_replication('t', '5 seconds')"
        )
        .unwrap(),
        table_job
    );
    assert_eq!(
        one(
            &mut c,
            "SELECT count(*) FROM cron.job WHERE jobname LIKE 'pgturso:%'"
        )
        .unwrap(),
        "2"
    );
    assert_eq!(
        one(&mut c, "SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'pgturso_%' AND database = current_database()").unwrap(),
        "1",
        "one slot, for the table"
    );
    // Beside it, the README's least-privilege role schedules a table of its own: its job runs as
    // that role (not as the extension owner the functions run as), without REPLICATION.
    c.batch_execute("DROP TABLE IF EXISTS lp_t; CREATE TABLE lp_t(id int PRIMARY KEY); INSERT INTO lp_t VALUES (1)")
        .unwrap();
    least_privilege_role(&mut c, "lp_cron", "lp_t");
    let mut lp = connect_as("lp_cron", "postgres");
    let lp_job = one(
        &mut lp,
        "SELECT turso_schedule_table_replication('lp_t', '5 seconds')",
    )
    .unwrap();
    assert_eq!(
        one(
            &mut c,
            &format!("SELECT username FROM cron.job WHERE jobid = {lp_job}")
        )
        .unwrap(),
        "lp_cron"
    );
    assert_eq!(count(&sqld, "lp_t"), 1, "the initial copy");
    c.batch_execute("INSERT INTO lp_t VALUES (2)").unwrap();
    // The initial sync ran at scheduling time.
    assert_eq!(count(&sqld, "testview"), 42);
    assert_eq!(count(&sqld, "t"), 50);
    // Secrets are not in cron.job.
    let commands = pg_rows(&mut c, "SELECT command || schedule FROM cron.job").concat();
    for cmd in commands.iter().flatten() {
        assert!(
            !cmd.contains(sqld.token()) && !cmd.contains(&sqld.url()),
            "{cmd}"
        );
    }
    // Change the source: one row leaves the view, one changes; the table gets a new row.
    c.batch_execute("UPDATE t SET v2 = 'changed' WHERE id = 1; DELETE FROM t WHERE id = 2; INSERT INTO t VALUES (51, 51, 'x', 'y')").unwrap();
    // Wait for exactly what is asserted: the row count alone is 50 before anything replicates
    // (+1 -1), and pg_cron may start the two jobs a second apart.
    let replicated = |sqld: &Sqld| {
        sqld.query("SELECT id FROM t WHERE id IN (2, 51) ORDER BY id") == vec![vec![json!(51)]]
            && count(sqld, "t") == 50
            && sqld.query("SELECT v2 FROM testview WHERE id = 1") == vec![vec![json!("changed")]]
            && count(sqld, "testview") == 41
            && count(sqld, "lp_t") == 2
    };
    wait_for("the scheduled jobs", Duration::from_secs(150), || {
        replicated(&sqld)
    });
    assert!(replicated(&sqld));
    assert_eq!(
        sqld.query("SELECT count(*) FROM t WHERE id = 2"),
        vec![vec![json!(0)]]
    );
    let status_sql =
        "SELECT name, active::text, last_status FROM turso_replication_status ORDER BY name";
    // The status row is written when a job's run ends, just after Turso has its data.
    wait_for("the jobs' status", Duration::from_secs(150), || {
        pg_rows(&mut c, status_sql)
            .iter()
            .all(|r| r[2].as_deref() == Some("ok"))
    });
    let status = pg_rows(&mut c, status_sql);
    assert_eq!(
        status,
        vec![
            vec![
                Some("public.lp_t".into()),
                Some("true".into()),
                Some("ok".into())
            ],
            vec![
                Some("public.t".into()),
                Some("true".into()),
                Some("ok".into())
            ],
            vec![
                Some("public.testview".into()),
                Some("true".into()),
                Some("ok".into())
            ],
        ]
    );
    // Unschedule: the jobs go away; with drop_slot the slot too.
    assert_eq!(
        one(&mut c, "SELECT turso_unschedule('testview')").unwrap(),
        "t"
    );
    assert_eq!(
        one(
            &mut lp,
            "SELECT turso_unschedule('lp_t', drop_slot => true)"
        )
        .unwrap(),
        "t"
    );
    drop(lp);
    assert_eq!(
        one(
            &mut c,
            "SELECT turso_unschedule('public.t', drop_slot => true)"
        )
        .unwrap(),
        "t"
    );
    assert_eq!(
        one(
            &mut c,
            "SELECT count(*) FROM cron.job WHERE jobname LIKE 'pgturso:%'"
        )
        .unwrap(),
        "0"
    );
    assert_eq!(
        one(&mut c, "SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'pgturso_%' AND database = current_database()").unwrap(),
        "0"
    );
    let err = c
        .batch_execute("SELECT turso_unschedule('public.t')")
        .unwrap_err();
    assert!(db_error(&err).1.contains("no replication named"), "{err}");
    c.batch_execute("DROP EXTENSION pgturso CASCADE; DROP SCHEMA IF EXISTS pgturso CASCADE; DROP MATERIALIZED VIEW testview; DROP TABLE t, lp_t; DROP ROLE lp_cron").unwrap();
}

#[test]
fn materialized_view_follows_rows_leaving_and_changing() {
    let sqld = Sqld::start("mv", false);
    let mut c = pg().fresh_db("mv");
    credentials(&mut c, &sqld);
    c.batch_execute(
        "CREATE EXTENSION pgturso;
         CREATE TABLE src(id int PRIMARY KEY, v text);
         INSERT INTO src SELECT g, 'v' || g FROM generate_series(1, 100) g;
         CREATE MATERIALIZED VIEW keyed AS SELECT id, v FROM src WHERE id <= 50;
         CREATE UNIQUE INDEX ON keyed (id);
         CREATE MATERIALIZED VIEW plain AS SELECT id, v FROM src WHERE id > 90;",
    )
    .unwrap();
    assert_eq!(
        one(&mut c, "SELECT turso_replicate_mv('keyed')").unwrap(),
        "50"
    );
    assert_eq!(
        one(&mut c, "SELECT turso_replicate_mv('plain')").unwrap(),
        "10"
    );
    c.batch_execute(
        "DELETE FROM src WHERE id IN (3, 95); UPDATE src SET v = 'new' WHERE id IN (4, 96)",
    )
    .unwrap();
    // Keyed view: only the difference travels (one delete, one upsert).
    assert_eq!(
        one(&mut c, "SELECT turso_replicate_mv('keyed')").unwrap(),
        "2"
    );
    // Plain view: replaced whole.
    assert_eq!(
        one(&mut c, "SELECT turso_replicate_mv('plain')").unwrap(),
        "9"
    );
    for view in ["keyed", "plain"] {
        let pg_side: Vec<Vec<serde_json::Value>> =
            pg_rows(&mut c, &format!("SELECT id, v FROM {view} ORDER BY id"))
                .into_iter()
                .map(|r| {
                    vec![
                        json!(r[0].as_ref().unwrap().parse::<i64>().unwrap()),
                        json!(r[1].clone().unwrap()),
                    ]
                })
                .collect();
        assert_eq!(
            sqld.query(&format!("SELECT id, v FROM {view} ORDER BY id")),
            pg_side,
            "{view}"
        );
    }
    // Nothing changed: nothing travels for the keyed view.
    assert_eq!(
        one(&mut c, "SELECT turso_replicate_mv('keyed')").unwrap(),
        "0"
    );
}

/// A view's unique index may hold NULL keys (NULLs are distinct), repeated: rows with such keys
/// are replaced as a group when any of them changes, never duplicated, and a deleted one goes.
#[test]
fn materialized_view_with_null_keys_stays_exact() {
    let sqld = Sqld::start("mv_nulls", false);
    let mut c = pg().fresh_db("mv_nulls");
    credentials(&mut c, &sqld);
    c.batch_execute(
        "CREATE EXTENSION pgturso;
         CREATE TABLE src(id int PRIMARY KEY, k1 int, k2 text, v text);
         INSERT INTO src SELECT g, CASE WHEN g % 10 = 0 THEN NULL ELSE g END,
           CASE WHEN g % 7 = 0 THEN NULL ELSE 'k' || (g % 3) END, 'v' || g
           FROM generate_series(1, 300) g;
         INSERT INTO src VALUES (1001, NULL, NULL, 'n1'), (1002, NULL, NULL, 'n2'), (1003, 5, NULL, 'n3');
         CREATE MATERIALIZED VIEW nk AS SELECT k1, k2, v FROM src;
         CREATE UNIQUE INDEX ON nk (k1, k2);",
    )
    .unwrap();
    let compare = |c: &mut postgres::Client| {
        let sql = "SELECT k1, k2, v FROM nk ORDER BY v, k1 IS NULL, k1, k2 IS NULL, k2";
        assert_eq!(sqld.query_text(sql), pg_rows(c, sql), "nk");
    };
    one(&mut c, "SELECT turso_replicate_mv('nk')");
    compare(&mut c);
    // Changes among NULL-keyed rows and keyed ones, a NULL-keyed row gone, one new.
    c.batch_execute(
        "UPDATE src SET v = 'changed' WHERE id IN (1002, 20, 4);
         DELETE FROM src WHERE id IN (1001, 14, 5);
         INSERT INTO src VALUES (1004, NULL, 'k1', 'n4'), (2000, 2000, 'k0', 'new')",
    )
    .unwrap();
    one(&mut c, "SELECT turso_replicate_mv('nk')");
    compare(&mut c);
    // Nothing changed: nothing travels.
    assert_eq!(one(&mut c, "SELECT turso_replicate_mv('nk')").unwrap(), "0");
    compare(&mut c);
}

#[test]
fn initial_sync_with_concurrent_inserts_is_an_exact_mirror() {
    let sqld = Sqld::start("isync", false);
    let mut c = pg().fresh_db("isync");
    credentials(&mut c, &sqld);
    c.batch_execute(
        "CREATE EXTENSION pgturso;
         CREATE TABLE big(id int PRIMARY KEY, v text, n int);
         INSERT INTO big SELECT g, 'row ' || g, g % 97 FROM generate_series(1, 100000) g;
         CREATE TABLE keyless(n int, v text);
         ALTER TABLE keyless REPLICA IDENTITY FULL;
         INSERT INTO keyless SELECT g % 100, 'k' FROM generate_series(1, 50000) g;",
    )
    .unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut w = pg().connect("isync");
            let mut i = 1_000_000;
            // Bounded, so replaying what was written during the copy stays quick.
            while !stop.load(std::sync::atomic::Ordering::SeqCst) && i < 1_000_500 {
                w.batch_execute(&format!(
                    "INSERT INTO big VALUES ({i}, 'concurrent', 1); UPDATE big SET n = n + 1 WHERE id = {}",
                    i % 100_000 + 1
                ))
                .unwrap();
                // Keyless: a row decoded twice would be a duplicate, so the copy's snapshot matters.
                w.batch_execute(&format!("INSERT INTO keyless VALUES ({}, 'w')", i % 100))
                    .unwrap();
                i += 1;
            }
            i - 1_000_000
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    one(&mut c, "SELECT turso_replicate_table('big')").unwrap();
    one(&mut c, "SELECT turso_replicate_table('keyless')").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let written = writer.join().unwrap();
    assert!(written > 0, "the writer ran during the copy");
    one(&mut c, "SELECT turso_replicate_table('big')").unwrap();
    one(&mut c, "SELECT turso_replicate_table('keyless')").unwrap();
    let pg_keyless = pg_rows(&mut c, "SELECT count(*), sum(n) FROM keyless");
    let turso_keyless: Vec<Option<String>> = sqld.query("SELECT count(*), sum(n) FROM keyless")[0]
        .iter()
        .map(|v| Some(v.to_string()))
        .collect();
    assert_eq!(
        vec![turso_keyless],
        pg_keyless,
        "keyless table: no row missing or doubled"
    );
    let pg_side = pg_rows(
        &mut c,
        "SELECT count(*), sum(id::bigint), sum(n::bigint), sum(length(v)) FROM big",
    );
    let turso = sqld.query("SELECT count(*), sum(id), sum(n), sum(length(v)) FROM big");
    let turso: Vec<Option<String>> = turso[0].iter().map(|v| Some(v.to_string())).collect();
    assert_eq!(vec![turso], pg_side, "counts and sums differ");
}

#[test]
fn missing_credentials_functions_are_explained() {
    let mut c = pg().fresh_db("nocreds");
    c.batch_execute("CREATE EXTENSION pgturso; CREATE TABLE t(id int primary key)")
        .unwrap();
    let err = c
        .batch_execute("SELECT turso_replicate_table('t')")
        .unwrap_err();
    let (code, msg, _, hint) = db_error(&err);
    assert_eq!(code, "42883");
    assert_eq!(msg, "function public.turso_url() does not exist");
    assert!(
        hint.contains("in schema public, returning your Turso database URL: CREATE FUNCTION public.turso_url() RETURNS text"),
        "{hint}"
    );
    c.batch_execute("CREATE FUNCTION turso_url() RETURNS text LANGUAGE sql AS $$ SELECT 'http://127.0.0.1:1/' $$").unwrap();
    let err = c
        .batch_execute("SELECT turso_schedule_table_replication('t', '5 seconds')")
        .unwrap_err();
    let (_, msg, _, hint) = db_error(&err);
    assert_eq!(msg, "function public.turso_token() does not exist");
    assert!(
        hint.contains("REVOKE ALL ON FUNCTION public.turso_token() FROM PUBLIC"),
        "{hint}"
    );
    // The plugin itself needs no extension objects: decoding works without them.
    assert_eq!(
        one(&mut c, "SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'pgturso_%' AND database = current_database()").unwrap(),
        "0",
        "a failed call leaves no slot behind"
    );
}

#[test]
fn status_view_reports_lag_and_a_failed_run_without_the_token() {
    let mut sqld = Sqld::start("status", true);
    let mut c = db_with_one_row("status", &sqld);
    one(&mut c, "SELECT turso_replicate_table('t')").unwrap();
    assert_eq!(count(&sqld, "t"), 1);
    c.batch_execute("INSERT INTO t SELECT g, 'x' FROM generate_series(2, 1000) g")
        .unwrap();
    let written = one(&mut c, "SELECT pg_current_wal_lsn()").unwrap();
    let lag: i64 = one(
        &mut c,
        "SELECT lag_bytes FROM turso_replication_status WHERE name = 'public.t'",
    )
    .unwrap()
    .parse()
    .unwrap();
    assert!(lag > 0, "lag after new rows: {lag}");
    sqld.kill();
    // The job's entry point records the failure instead of failing.
    assert_eq!(
        one(&mut c, "SELECT pgturso._run('t'::regclass)").unwrap(),
        "f"
    );
    let row = pg_rows(
        &mut c,
        "SELECT last_status, last_error FROM turso_replication_status WHERE name = 'public.t'",
    );
    let (status, error) = (row[0][0].clone().unwrap(), row[0][1].clone().unwrap());
    assert_eq!(status, "error");
    assert!(error.contains("could not connect"), "{error}");
    assert!(!error.contains(sqld.token()));
    let activity = pg_rows(&mut c, "SELECT query FROM pg_stat_activity").concat();
    assert!(activity.iter().flatten().all(|q| !q.contains(sqld.token())));
    sqld.restart();
    assert_eq!(
        one(&mut c, "SELECT pgturso._run('t'::regclass)").unwrap(),
        "t"
    );
    assert_eq!(count(&sqld, "t"), 1000);
    // Lag counts the whole cluster's WAL (other tests write too): check the position instead.
    let row = pg_rows(
        &mut c,
        &format!("SELECT last_status, coalesce(last_error, ''), (confirmed_lsn >= '{written}')::text FROM turso_replication_status WHERE name = 'public.t'"),
    );
    assert_eq!(
        row[0],
        vec![Some("ok".into()), Some(String::new()), Some("true".into())]
    );
}

#[test]
fn a_renamed_table_keeps_its_slot_and_is_not_copied_again() {
    let sqld = Sqld::start("rename", false);
    let mut c = pg().fresh_db("rename");
    credentials(&mut c, &sqld);
    c.batch_execute(
        "CREATE EXTENSION pgturso;
         CREATE TABLE t(id int primary key, v text);
         INSERT INTO t SELECT g, 'v' FROM generate_series(1, 100) g;",
    )
    .unwrap();
    assert_eq!(
        one(&mut c, "SELECT turso_replicate_table('t')").unwrap(),
        "100",
        "initial copy"
    );
    let slot = one(&mut c, "SELECT slot FROM turso_replication_status").unwrap();
    // Changes committed before the rename, decoded after it, are matched by the table's
    // identity, not by its name now: none is lost.
    c.batch_execute("INSERT INTO t VALUES (0, 'before the rename')")
        .unwrap();
    c.batch_execute(
        "CREATE SCHEMA s2; ALTER TABLE t RENAME TO t2; INSERT INTO t2 VALUES (101, 'new')",
    )
    .unwrap();
    assert_eq!(
        one(&mut c, "SELECT turso_replicate_table('t2')").unwrap(),
        "2",
        "two transactions, no new copy"
    );
    let rows = pg_rows(&mut c, "SELECT name, slot FROM turso_replication_status");
    assert_eq!(rows, vec![vec![Some("public.t2".into()), Some(slot)]]);
    assert_eq!(count(&sqld, "t2"), 102);
    assert!(!sqld.table_exists("t"), "the Turso table was renamed");
    // SET SCHEMA too; the Turso table takes the new name with the first change made under it.
    c.batch_execute(
        "INSERT INTO t2 VALUES (102, 'before'); ALTER TABLE t2 SET SCHEMA s2; INSERT INTO s2.t2 VALUES (103, 'after')",
    )
    .unwrap();
    assert_eq!(
        one(&mut c, "SELECT turso_replicate_table('s2.t2')").unwrap(),
        "1",
        "one transaction"
    );
    assert_eq!(count(&sqld, "s2.t2"), 104);
    assert!(!sqld.table_exists("t2"));
}

/// A progress row left in Turso by an earlier life of the table's slot (a restore from backup, a
/// slot name used before) is reset by the initial copy for the new slot, so the new slot's
/// transactions are not skipped as if Turso had them.
#[test]
fn the_initial_copy_of_a_new_slot_resets_the_progress_row_it_owns() {
    let sqld = Sqld::start("reset", false);
    let mut c = pg().fresh_db("reset");
    credentials(&mut c, &sqld);
    c.batch_execute(
        "CREATE EXTENSION pgturso;
         CREATE TABLE t(id int primary key, v text);
         INSERT INTO t SELECT g, 'v' FROM generate_series(1, 10) g;",
    )
    .unwrap();
    assert_eq!(
        one(&mut c, "SELECT turso_replicate_table('t')").unwrap(),
        "10"
    );
    c.batch_execute("INSERT INTO t VALUES (11, 'w')").unwrap();
    assert_eq!(
        one(&mut c, "SELECT turso_replicate_table('t')").unwrap(),
        "1"
    );
    // The row as an earlier life of the slot name left it: far ahead of this server's WAL.
    sqld.query(
        "UPDATE _pgturso_progress SET lsn = lsn + 1000000000000, xid = NULL, commit_time = NULL",
    );
    c.batch_execute(
        "SELECT turso_unschedule('t', drop_slot => true); INSERT INTO t VALUES (12, 'x')",
    )
    .unwrap();
    assert_eq!(
        one(&mut c, "SELECT turso_replicate_table('t')").unwrap(),
        "12",
        "copied again"
    );
    c.batch_execute("INSERT INTO t VALUES (13, 'y')").unwrap();
    assert_eq!(
        one(&mut c, "SELECT turso_replicate_table('t')").unwrap(),
        "1",
        "the new slot's transaction is replicated, not skipped"
    );
    assert_eq!(count(&sqld, "t"), 13);
}

/// turso_url() and turso_token() are the functions recorded when the replication was created: a
/// function of the same name earlier on a later caller's search_path gets neither the data nor the
/// token.
#[test]
fn a_credentials_function_earlier_on_the_search_path_redirects_nothing() {
    let sqld = Sqld::start("pinned", true);
    let evil = Sqld::start("evil", false);
    let mut c = db_with_one_row("pinned", &sqld);
    assert_eq!(
        one(&mut c, "SELECT turso_replicate_table('t')").unwrap(),
        "1"
    );
    c.batch_execute(&format!(
        "CREATE SCHEMA attacker;
         CREATE TABLE attacker.stolen(token text);
         CREATE FUNCTION attacker.turso_url() RETURNS text LANGUAGE sql AS $$ SELECT '{}' $$;
         CREATE FUNCTION attacker.turso_token() RETURNS text LANGUAGE sql VOLATILE
             AS $$ INSERT INTO attacker.stolen SELECT public.turso_token(); SELECT 'x' $$;
         SET search_path = attacker, public;
         INSERT INTO public.t VALUES (2, 'b');",
        evil.url()
    ))
    .unwrap();
    assert_eq!(
        one(&mut c, "SELECT turso_replicate_table('public.t')").unwrap(),
        "1"
    );
    assert_eq!(
        count(&sqld, "t"),
        2,
        "the data went where the replication was created for"
    );
    assert!(!evil.table_exists("t"), "nothing reached the other server");
    assert_eq!(
        one(&mut c, "SELECT count(*) FROM attacker.stolen").unwrap(),
        "0"
    );
    // A recorded function dropped and created anew is looked up again, in the extension's schema.
    // It may name another Turso database: the table is copied anew (its 3 rows), through the
    // slot of the new pair of functions, and the old slot, which nothing uses any more, goes.
    let old_slot = one(&mut c, "SELECT slot FROM pgturso.replications").unwrap();
    c.batch_execute(&format!(
        "RESET search_path; DROP FUNCTION public.turso_url();
         CREATE FUNCTION public.turso_url() RETURNS text LANGUAGE sql AS $$ SELECT '{}' $$;
         INSERT INTO t VALUES (3, 'c')",
        sqld.url()
    ))
    .unwrap();
    assert_eq!(
        one(&mut c, "SELECT turso_replicate_table('t')").unwrap(),
        "3"
    );
    assert_eq!(count(&sqld, "t"), 3);
    let new_slot = one(&mut c, "SELECT slot FROM pgturso.replications").unwrap();
    assert_ne!(new_slot, old_slot);
    assert_eq!(
        one(
            &mut c,
            &format!("SELECT string_agg(slot_name, ',') FROM pg_replication_slots WHERE slot_name IN ('{old_slot}', '{new_slot}')")
        ),
        Some(new_slot)
    );
    // One that a role other than a superuser owns would run that role's code with the extension
    // owner's rights: refused, with the fix in the hint.
    c.batch_execute(
        "DROP ROLE IF EXISTS pinned_owner; CREATE ROLE pinned_owner;
         ALTER FUNCTION public.turso_url() OWNER TO pinned_owner;
         INSERT INTO t VALUES (4, 'd')",
    )
    .unwrap();
    let err = c
        .batch_execute("SELECT turso_replicate_table('t')")
        .unwrap_err();
    let (code, message, _, hint) = db_error(&err);
    assert_eq!(code, "42501", "{message}");
    assert!(message.contains("not a superuser"), "{message}");
    assert!(
        hint.contains("ALTER FUNCTION public.turso_url() OWNER TO"),
        "{hint}"
    );
    c.batch_execute(
        "ALTER FUNCTION public.turso_url() OWNER TO CURRENT_USER; DROP ROLE pinned_owner",
    )
    .unwrap();
    assert_eq!(
        one(&mut c, "SELECT turso_replicate_table('t')").unwrap(),
        "1"
    );
    assert_eq!(count(&sqld, "t"), 4);
}

/// The README's least-privilege role, used for real: a non-superuser replicates through the SQL
/// API, another role cannot read the token, and at debug5 the token never reaches the log.
#[test]
fn least_privilege_role_and_no_token_in_the_log_at_debug5() {
    let sqld = Sqld::start("lp", true);
    let mut c = pg().fresh_db("lp");
    let token = sqld.token().to_string();
    c.batch_execute(&format!(
        "DROP ROLE IF EXISTS lp_other;
         CREATE EXTENSION IF NOT EXISTS pgturso;
         CREATE ROLE lp_other LOGIN;
         CREATE TABLE t(id int primary key, v text);
         INSERT INTO t VALUES (1, 'a');
         CREATE TABLE hidden(id int primary key);
         CREATE FUNCTION turso_url() RETURNS text LANGUAGE sql AS $$ SELECT '{url}' $$;
         CREATE TABLE turso_secret(token text NOT NULL);
         INSERT INTO turso_secret VALUES ('{token}');
         CREATE FUNCTION turso_token() RETURNS text LANGUAGE sql STABLE
             AS $$ SELECT token FROM public.turso_secret $$;
         REVOKE ALL ON FUNCTION turso_token() FROM PUBLIC;",
        url = sqld.url()
    ))
    .unwrap();
    least_privilege_role(&mut c, "lp_sync", "t");
    let connect = |user: &str| connect_as(user, "lp");
    let mut sync = connect("lp_sync");
    assert_eq!(
        one(&mut sync, "SELECT turso_replicate_table('t')").unwrap(),
        "1"
    );
    sync.batch_execute("INSERT INTO t VALUES (2, 'b')")
        .unwrap_err(); // may read, not write
    c.batch_execute("INSERT INTO t VALUES (2, 'b')").unwrap();
    assert_eq!(
        one(&mut sync, "SELECT turso_replicate_table('t')").unwrap(),
        "1"
    );
    assert_eq!(count(&sqld, "t"), 2);
    assert_eq!(
        one(
            &mut sync,
            "SELECT last_status FROM turso_replication_status"
        )
        .unwrap(),
        "ok"
    );
    // The role that runs replication cannot skip transactions, read the token or send data of its
    // own: no slot functions (no REPLICATION), no write on the bookkeeping, no internal function.
    let slot = one(&mut c, "SELECT slot FROM pgturso.replications").unwrap();
    c.batch_execute("INSERT INTO t VALUES (3, 'c')").unwrap();
    for sql in [
        format!("SELECT pg_replication_slot_advance('{slot}', pg_current_wal_lsn())"),
        format!("SELECT pg_drop_replication_slot('{slot}')"),
        format!("SELECT count(*) FROM pg_logical_slot_get_changes('{slot}', NULL, NULL)"),
        "UPDATE pgturso.replications SET copy_snapshot = NULL, synced = true".into(),
        "SELECT turso_token()".into(),
        "SELECT * FROM pgturso._credentials()".into(),
        format!("SELECT * FROM pgturso._sync_rows('t'::regclass, '{}', NULL, true, NULL, 'SELECT * FROM t')", sqld.url()),
        "SELECT pgturso._pin_credentials('t', 0, 0)".into(),
    ] {
        let err = sync.batch_execute(&sql).unwrap_err();
        assert_eq!(db_error(&err).0, "42501", "{sql}: {err:?}");
    }
    // What it may not read, it may not replicate.
    let err = sync
        .batch_execute("SELECT turso_replicate_table('hidden')")
        .unwrap_err();
    let (code, message, _, hint) = db_error(&err);
    assert_eq!(code, "42501", "{message}");
    assert!(
        hint.contains("GRANT SELECT ON public.hidden TO lp_sync"),
        "{hint}"
    );
    assert!(!sqld.table_exists("hidden"));
    // Nothing was skipped: the next run brings row 3.
    assert_eq!(
        one(&mut sync, "SELECT turso_replicate_table('t')").unwrap(),
        "1"
    );
    assert_eq!(count(&sqld, "t"), 3);
    // A role without the grants can neither run nor remove a replication, not even through the
    // function the scheduled jobs call; the bookkeeping keeps the last run.
    let mut other = connect("lp_other");
    let relid = one(&mut c, "SELECT 't'::regclass::oid").unwrap();
    for sql in [
        "SELECT turso_replicate_table('t')".to_string(),
        format!("SELECT pgturso._run({relid})"),
        "SELECT pgturso._unschedule('t', 't', true)".into(),
        "SELECT turso_unschedule('t', true)".into(),
    ] {
        let err = other.batch_execute(&sql).unwrap_err();
        assert_eq!(db_error(&err).0, "42501", "{sql}: {err:?}");
    }
    assert_eq!(
        one(
            &mut c,
            "SELECT last_status || ' ' || last_rows FROM pgturso.replications"
        )
        .unwrap(),
        "ok 1"
    );
    let mut other = connect("lp_other");
    let err = other.batch_execute("SELECT turso_token()").unwrap_err();
    assert_eq!(db_error(&err).0, "42501");
    let err = other
        .batch_execute("SELECT * FROM turso_secret")
        .unwrap_err();
    assert_eq!(db_error(&err).0, "42501");
    // debug5, through the SQL API: the token is neither in the statements nor in any log line.
    c.batch_execute("SET log_min_messages = debug5; SET log_min_error_statement = debug5")
        .unwrap();
    c.batch_execute("INSERT INTO t VALUES (5, 'e')").unwrap();
    assert_eq!(
        one(&mut c, "SELECT turso_replicate_table('t')").unwrap(),
        "1"
    );
    sqld_stop_and_fail(&mut c);
    drop((sync, other, c));
    std::thread::sleep(Duration::from_millis(300));
    let log = pg().server_log();
    assert!(
        log.contains("turso_replicate_table"),
        "debug5 statements were logged"
    );
    let leaks: Vec<&str> = log.lines().filter(|l| l.contains(&token)).collect();
    assert!(leaks.is_empty(), "token in the server log: {leaks:#?}");
    let mut admin = pg().connect("postgres");
    // One statement each: DROP DATABASE cannot run in the implicit transaction of a batch.
    for sql in [
        "DROP DATABASE lp WITH (FORCE)",
        "DROP ROLE lp_sync",
        "DROP ROLE lp_other",
    ] {
        admin
            .batch_execute(sql)
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    }
}

/// A failing run at debug5 (Turso unreachable): its error is logged, without the token.
fn sqld_stop_and_fail(c: &mut postgres::Client) {
    c.batch_execute(
        "CREATE OR REPLACE FUNCTION turso_url() RETURNS text LANGUAGE sql AS $$ SELECT 'http://127.0.0.1:1/' $$;
         INSERT INTO t VALUES (4, 'd')",
    )
    .unwrap();
    let err = c
        .batch_execute("SELECT turso_replicate_table('t')")
        .unwrap_err();
    assert_eq!(db_error(&err).0, "08006");
}

/// The tables replicated into one Turso database share one slot: one call replicates what all of
/// them have pending, its transactions grouped into few Turso transactions (group commit), and
/// concurrent calls wait for each other instead of failing on the busy slot. The slot goes with
/// the last of its tables; a partition and its partitioned table cannot share one.
#[test]
fn tables_of_one_turso_database_share_one_slot_and_commit_in_groups() {
    let sqld = Sqld::start("shared", true);
    let proxy = common::proxy::Proxy::start(sqld.port, |_| common::proxy::Action::Forward);
    let mut c = pg().fresh_db("shared");
    c.batch_execute(&format!(
        "CREATE FUNCTION turso_token() RETURNS text LANGUAGE SQL AS $$ SELECT '{}'; $$;
         CREATE FUNCTION turso_url() RETURNS text LANGUAGE SQL AS $$ SELECT '{}'; $$;
         CREATE EXTENSION pgturso;
         CREATE TABLE a(id int primary key, v text);
         CREATE TABLE b(id int primary key, n int);
         INSERT INTO a VALUES (0, 'zero'); INSERT INTO b VALUES (1, 0);",
        sqld.token(),
        proxy.url()
    ))
    .unwrap();
    assert_eq!(
        one(&mut c, "SELECT turso_replicate_table('a')").unwrap(),
        "1"
    );
    assert_eq!(
        one(&mut c, "SELECT turso_replicate_table('b')").unwrap(),
        "1"
    );
    let slots = "SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'pgturso_%' AND database = current_database()";
    assert_eq!(one(&mut c, slots).unwrap(), "1", "one slot for both tables");
    assert_eq!(
        one(
            &mut c,
            "SELECT count(DISTINCT slot) FROM turso_replication_status"
        )
        .unwrap(),
        "1"
    );

    // 300 transactions, each writing both tables (b's row is hot).
    for i in 1..=300 {
        c.batch_execute(&format!(
            "BEGIN; INSERT INTO a VALUES ({i}, 'v{i}'); UPDATE b SET n = n + 1 WHERE id = 1; COMMIT;"
        ))
        .unwrap();
    }
    let before = proxy.requests.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        one(&mut c, "SELECT turso_replicate_table('a')").unwrap(),
        "300",
        "a's call replicates every transaction of both tables"
    );
    let requests = proxy.requests.load(std::sync::atomic::Ordering::SeqCst) - before;
    assert!(
        requests < 30,
        "300 transactions took {requests} requests: not grouped"
    );
    common::assert_mirror(&mut c, &sqld, "a", "id, v");
    common::assert_mirror(&mut c, &sqld, "b", "id, n");
    assert_eq!(
        one(&mut c, "SELECT turso_replicate_table('b')").unwrap(),
        "0"
    );

    // A call holding the slot (its transaction open): another call waits for it, then goes on.
    let mut holder = pg().connect("shared");
    holder
        .batch_execute(
            "BEGIN; INSERT INTO a VALUES (1000, 'x'); SELECT turso_replicate_table('a');",
        )
        .unwrap();
    let waiter = std::thread::spawn(|| {
        let mut w = pg().connect("shared");
        w.batch_execute("INSERT INTO b VALUES (2, 2)").unwrap();
        one(&mut w, "SELECT turso_replicate_table('b')").unwrap()
    });
    common::wait_until(
        "the second call to wait for the slot",
        Duration::from_secs(30),
        || {
            one(
            &mut c,
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT turso_replicate_table(''b'')%' AND wait_event = 'PgSleep'",
        )
        .unwrap()
            == "1"
        },
    );
    holder.batch_execute("COMMIT").unwrap();
    assert_eq!(
        waiter.join().unwrap(),
        "2",
        "a's insert and b's, both committed by then"
    );
    common::assert_mirror(&mut c, &sqld, "a", "id, v");
    common::assert_mirror(&mut c, &sqld, "b", "id, n");

    // A partition of a replicated partitioned table: refused, nothing created.
    c.batch_execute(
        "CREATE TABLE p(id int primary key) PARTITION BY RANGE (id);
         CREATE TABLE p1 PARTITION OF p FOR VALUES FROM (0) TO (100);",
    )
    .unwrap();
    assert_eq!(
        one(&mut c, "SELECT turso_replicate_table('p')").unwrap(),
        "0"
    );
    let err = c
        .batch_execute("SELECT turso_replicate_table('p1')")
        .unwrap_err();
    let (code, message, _, hint) = db_error(&err);
    assert_eq!(code, "55000", "{message}");
    assert!(message.contains("same Turso database"), "{message}");
    assert!(hint.contains("either the partitioned table"), "{hint}");

    // The slot stays while a table uses it, and goes with the last.
    for t in ["p", "a"] {
        c.batch_execute(&format!(
            "SELECT turso_unschedule('{t}', drop_slot => true)"
        ))
        .unwrap();
        assert_eq!(one(&mut c, slots).unwrap(), "1");
    }
    c.batch_execute("SELECT turso_unschedule('b', drop_slot => true)")
        .unwrap();
    assert_eq!(one(&mut c, slots).unwrap(), "0");
}
