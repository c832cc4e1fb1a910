//! End-to-end tests of continuous replication (`turso_start` / `turso_stop`): a background worker
//! per publication streams its tables into Turso with no call from anyone, survives being
//! terminated, records errors in the status view and recovers from them.

mod common;

use std::time::Duration;

use common::proxy::{Action, Proxy};
use common::{db_error, get_changes, one, pg, pg_rows, wait_until, Load, Sqld};

/// Continuous replication is quick: 90 s is only the bound of a failure.
fn wait_for(what: &str, ok: impl FnMut() -> bool) {
    wait_until(what, Duration::from_secs(90), ok)
}

/// Turso holds exactly what PostgreSQL holds in `accounts` (by key) and `events` (keyless, as a
/// multiset); rows compared as text, sorted here (the two servers collate differently).
fn mirrored(c: &mut postgres::Client, sqld: &Sqld) -> bool {
    let diff = difference(c, sqld);
    if let Some(d) = &diff {
        eprintln!("not yet mirrored: {d}");
    }
    diff.is_none()
}

fn difference(c: &mut postgres::Client, sqld: &Sqld) -> Option<String> {
    for (t, cols) in [("accounts", "id, balance"), ("events", "v")] {
        if !sqld.table_exists(t) {
            return Some(format!("no table {t} in Turso"));
        }
        let mut turso = sqld.query_text(&format!("SELECT {cols} FROM {t}"));
        let mut pg = pg_rows(
            c,
            &format!("SELECT {} FROM {t}", cols.replace(", ", "::text, ")),
        );
        turso.sort();
        pg.sort();
        if turso != pg {
            let first = turso.iter().zip(&pg).find(|(a, b)| a != b);
            return Some(format!(
                "{t}: Turso {} rows, PostgreSQL {}; first difference (Turso, PostgreSQL): {first:?}",
                turso.len(),
                pg.len()
            ));
        }
    }
    None
}

/// One transaction of an application on `setup`'s tables: money moves between two accounts, and
/// the keyless `events` gets rows (each value twice), loses some and has some changed.
fn app_transaction(i: u64) -> String {
    let (from, to) = (i % 100 + 1, (i * 37 + 11) % 100 + 1);
    let mut sql = format!(
        "UPDATE accounts SET balance = balance - 1 WHERE id = {from};
         UPDATE accounts SET balance = balance + 1 WHERE id = {to};
         INSERT INTO events VALUES ('load {}');",
        i / 2
    );
    if i.is_multiple_of(7) && i >= 20 {
        sql += &format!("DELETE FROM events WHERE v = 'load {}';", i / 2 - 10);
    }
    if i.is_multiple_of(11) && i >= 20 {
        sql += &format!(
            "UPDATE events SET v = v || '+' WHERE v = 'load {}';",
            i / 2 - 7
        );
    }
    sql
}

fn status(c: &mut postgres::Client) -> Vec<Option<String>> {
    pg_rows(
        c,
        "SELECT active::text, last_status, last_error FROM turso_replication_status WHERE kind = 'publication'",
    )
    .into_iter()
    .next()
    .unwrap_or_default()
}

fn worker_pid(c: &mut postgres::Client) -> Option<String> {
    one(
        c,
        "SELECT pid::text FROM pg_stat_activity WHERE backend_type = 'pgturso publication' AND datname = current_database()",
    )
}

fn setup(name: &str, sqld: &Sqld) -> postgres::Client {
    let mut c = pg().fresh_db(name);
    c.batch_execute(&format!(
        "CREATE EXTENSION pgturso;
         CREATE FUNCTION turso_url() RETURNS text LANGUAGE sql AS $$ SELECT '{}' $$;
         CREATE FUNCTION turso_token() RETURNS text LANGUAGE sql AS $$ SELECT '{}' $$;
         CREATE TABLE accounts(id int PRIMARY KEY, balance int NOT NULL);
         INSERT INTO accounts SELECT g, 100 FROM generate_series(1, 100) g;
         CREATE TABLE events(v text);
         ALTER TABLE events REPLICA IDENTITY FULL;
         INSERT INTO events SELECT 'e' || g FROM generate_series(1, 10) g;
         CREATE TABLE other(id int PRIMARY KEY);
         CREATE PUBLICATION app FOR TABLE accounts, events;",
        sqld.url(),
        sqld.token()
    ))
    .unwrap();
    c
}

#[test]
fn a_publication_replicates_by_itself_survives_termination_and_stops() {
    let sqld = Sqld::start("worker", true);
    let mut c = setup("worker", &sqld);
    let pid: i32 = one(&mut c, "SELECT turso_start('app')")
        .unwrap()
        .parse()
        .unwrap();
    assert!(pid > 0);
    // The initial copy is done when turso_start returns.
    assert!(mirrored(&mut c, &sqld), "the initial copy");
    assert!(
        !sqld.table_exists("other"),
        "other is not in the publication"
    );
    // Changes arrive with no call from anyone, each transaction whole.
    for i in 0..20 {
        c.batch_execute(&format!(
            "UPDATE accounts SET balance = balance - 10 WHERE id = {a};
             UPDATE accounts SET balance = balance + 10 WHERE id = {b};
             INSERT INTO events VALUES ('t{i}');",
            a = i % 100 + 1,
            b = (i * 7) % 100 + 1
        ))
        .unwrap();
    }
    c.batch_execute("DELETE FROM events WHERE v = 'e1'; INSERT INTO accounts VALUES (101, 5); INSERT INTO other VALUES (1)")
        .unwrap();
    wait_for("the worker to replicate", || mirrored(&mut c, &sqld));
    let sum = sqld.query_text("SELECT sum(balance) FROM accounts");
    assert_eq!(sum, vec![vec![Some("10005".into())]]);
    assert!(!sqld.table_exists("other"));
    // Writes the publication does not hold still move the slot on: its retained WAL stays small.
    c.batch_execute("INSERT INTO other SELECT g FROM generate_series(2, 1000) g")
        .unwrap();
    let written = one(&mut c, "SELECT pg_current_wal_flush_lsn()::text").unwrap();
    wait_for("the slot to pass writes of other tables", || {
        one(
            &mut c,
            &format!(
                "SELECT confirmed_flush_lsn >= '{written}' FROM pg_replication_slots WHERE slot_name LIKE 'pgturso_pub_%' AND database = current_database()"
            ),
        )
        .as_deref()
            == Some("t")
    });
    assert!(!sqld.table_exists("other"));
    wait_for("the status view", || {
        status(&mut c) == vec![Some("true".into()), Some("streaming".into()), None]
    });
    // Terminated, it is started again by PostgreSQL and goes on where it was.
    c.batch_execute(&format!("SELECT pg_terminate_backend({pid})"))
        .unwrap();
    c.batch_execute("INSERT INTO events VALUES ('after the kill'); UPDATE accounts SET balance = 0 WHERE id = 1")
        .unwrap();
    wait_for("the restarted worker", || mirrored(&mut c, &sqld));
    assert_ne!(worker_pid(&mut c), Some(pid.to_string()));
    // Stopped: no worker, the status says so; what is written meanwhile waits in the slot.
    assert_eq!(one(&mut c, "SELECT turso_stop('app')").unwrap(), "t");
    assert_eq!(worker_pid(&mut c), None);
    assert_eq!(
        status(&mut c)[..2],
        [Some("false".into()), Some("stopped".into())]
    );
    c.batch_execute("INSERT INTO events VALUES ('while stopped')")
        .unwrap();
    // PostgreSQL starts a terminated worker again after 5 s; a stopped one then exits at once.
    std::thread::sleep(Duration::from_secs(6));
    wait_for("no worker", || worker_pid(&mut c).is_none());
    assert!(!mirrored(&mut c, &sqld), "nothing replicated while stopped");
    assert_eq!(status(&mut c)[1].as_deref(), Some("stopped"));
    // Started again: no new copy, the pending change arrives.
    one(&mut c, "SELECT turso_start('app')").unwrap();
    wait_for("the resumed worker", || mirrored(&mut c, &sqld));
    // Stopped and started again at once: PostgreSQL starts the worker turso_stop terminated
    // again 5 s later, while the replication runs; it finds the replication's worker running and
    // leaves, so one worker replicates.
    one(&mut c, "SELECT turso_stop('app')").unwrap();
    one(&mut c, "SELECT turso_start('app')").unwrap();
    let leaves = format!(
        "another worker replicates publication replication {} of database {}",
        one(&mut c, "SELECT id FROM pgturso.publications").unwrap(),
        one(
            &mut c,
            "SELECT oid FROM pg_database WHERE datname = current_database()"
        )
        .unwrap()
    );
    wait_for("the restarted worker to leave", || {
        pg().server_log().contains(&leaves)
    });
    assert_eq!(
        one(
            &mut c,
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pgturso publication' AND datname = current_database()"
        )
        .as_deref(),
        Some("1")
    );
    assert_eq!(status(&mut c)[1].as_deref(), Some("streaming"));
    // Dropped: the slot and the state go.
    assert_eq!(
        one(&mut c, "SELECT turso_stop('app', drop => true)").unwrap(),
        "t"
    );
    assert_eq!(
        one(
            &mut c,
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'pgturso_pub_%' AND database = current_database()"
        )
        .unwrap(),
        "0"
    );
    assert_eq!(
        one(&mut c, "SELECT count(*) FROM turso_replication_status").unwrap(),
        "0"
    );
    let err = c.batch_execute("SELECT turso_stop('app')").unwrap_err();
    assert!(
        db_error(&err).1.contains("no replication of publication"),
        "{err}"
    );
    let err = c.batch_execute("SELECT turso_start('nope')").unwrap_err();
    let (code, message, _, hint) = db_error(&err);
    assert_eq!(code, "42704", "{message}");
    assert!(hint.contains("CREATE PUBLICATION"), "{hint}");
}

/// The status view tells an error the operator must mend (a token Turso refuses: `error`) from an
/// unreachable Turso (`waiting for Turso`), and recovers from both by itself.
#[test]
fn an_unreachable_turso_is_waited_for_in_the_status_until_it_is_back() {
    let sqld = Sqld::start("worker_err", true);
    let mut c = setup("worker_err", &sqld);
    one(&mut c, "SELECT turso_start('app')").unwrap();
    c.batch_execute(
        "CREATE OR REPLACE FUNCTION turso_token() RETURNS text LANGUAGE sql AS $$ SELECT 'not-a-token' $$;
         INSERT INTO events VALUES ('during the outage')",
    )
    .unwrap();
    wait_for("the error in the status view", || {
        status(&mut c)[1].as_deref() == Some("error")
    });
    let error = status(&mut c)[2].clone().unwrap_or_default();
    assert!(!error.contains("not-a-token"), "{error}");
    c.batch_execute(&format!(
        "CREATE OR REPLACE FUNCTION turso_token() RETURNS text LANGUAGE sql AS $$ SELECT '{}' $$;
         CREATE OR REPLACE FUNCTION turso_url() RETURNS text LANGUAGE sql AS $$ SELECT 'http://127.0.0.1:1/' $$",
        sqld.token()
    ))
    .unwrap();
    wait_for("waiting for Turso in the status view", || {
        status(&mut c)[1].as_deref() == Some("waiting for Turso")
    });
    let error = status(&mut c)[2].clone().unwrap_or_default();
    assert!(error.contains("127.0.0.1:1"), "{error}");
    assert!(!error.contains(sqld.token()));
    assert!(!mirrored(&mut c, &sqld));
    // The lag in seconds grows while the change waits; when the error happened is shown.
    let lag = |c: &mut postgres::Client| -> Option<f64> {
        one(
            c,
            "SELECT lag_seconds::text FROM turso_replication_status WHERE kind = 'publication'",
        )
        .map(|s| s.parse().unwrap())
    };
    wait_for("the lag to pass a second", || {
        lag(&mut c).is_some_and(|l| l > 1.0)
    });
    assert_eq!(
        one(&mut c, "SELECT (last_error_at IS NOT NULL)::text FROM turso_replication_status WHERE kind = 'publication'").as_deref(),
        Some("true")
    );
    c.batch_execute(&format!(
        "CREATE OR REPLACE FUNCTION turso_url() RETURNS text LANGUAGE sql AS $$ SELECT '{}' $$",
        sqld.url()
    ))
    .unwrap();
    wait_for("recovery", || mirrored(&mut c, &sqld));
    wait_for("the status view", || {
        status(&mut c)[1].as_deref() == Some("streaming")
    });
    // Caught up: no lag; the transaction and its row counted (the initial copy is not).
    wait_for("no lag", || lag(&mut c).is_some_and(|l| l < 1.0));
    assert_eq!(
        pg_rows(
            &mut c,
            "SELECT transactions::text, rows::text FROM turso_replication_status WHERE kind = 'publication'"
        ),
        vec![vec![Some("1".into()), Some("1".into())]]
    );
    one(&mut c, "SELECT turso_stop('app', drop => true)").unwrap();
}

/// Turso unreachable for a minute while an application keeps writing: the status view says so
/// and the lag grows; when Turso is back the worker catches up by itself, and Turso equals
/// PostgreSQL, with no duplicate in the keyless table.
#[test]
fn a_minute_long_outage_under_load_loses_nothing() {
    let mut sqld = Sqld::start("worker_outage", true);
    let mut c = setup("worker_outage", &sqld);
    one(&mut c, "SELECT turso_start('app')").unwrap();
    let load = Load::start("worker_outage", Duration::from_millis(20), app_transaction);
    wait_for("the load in Turso", || {
        sqld.query_text("SELECT count(*) FROM events WHERE v LIKE 'load%'")[0][0]
            .as_deref()
            .is_some_and(|n| n != "0")
    });
    sqld.kill();
    let down = std::time::Instant::now();
    wait_for("waiting for Turso in the status view", || {
        status(&mut c)[1].as_deref() == Some("waiting for Turso")
    });
    while down.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_secs(1));
    }
    let lag: f64 = one(
        &mut c,
        "SELECT lag_seconds::text FROM turso_replication_status WHERE kind = 'publication'",
    )
    .unwrap()
    .parse()
    .unwrap();
    assert!(lag > 30.0, "lag after a minute's outage: {lag} s");
    sqld.restart();
    // Replication resumes while the application still writes, then catches up.
    std::thread::sleep(Duration::from_secs(5));
    let committed = load.stop();
    assert!(
        committed > 500,
        "the load committed {committed} transactions"
    );
    wait_for("the catch-up after the outage", || mirrored(&mut c, &sqld));
    wait_for("streaming in the status view", || {
        status(&mut c)[1].as_deref() == Some("streaming")
    });
    one(&mut c, "SELECT turso_stop('app', drop => true)").unwrap();
}

/// Initial copies show in the status view (state `copying`, the table, rows sent of PostgreSQL's
/// estimate, which of how many tables) and in `pg_stat_progress_copy` for as long as they last
/// (here, while a proxy holds Turso's answers back): `turso_start`'s own, and the worker's of a
/// table that joins the publication.
#[test]
fn a_copy_in_progress_shows_in_the_status_view() {
    let sqld = Sqld::start("worker_progress", false);
    let mut c = setup("worker_progress", &sqld);
    let hold = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let held = hold.clone();
    let proxy = Proxy::start(sqld.port, move |_| {
        while held.load(std::sync::atomic::Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(10));
        }
        Action::Forward
    });
    c.batch_execute(&format!(
        "CREATE OR REPLACE FUNCTION turso_url() RETURNS text LANGUAGE sql AS $$ SELECT '{}' $$;
         CREATE TABLE big(id int PRIMARY KEY, v text);
         INSERT INTO big SELECT g, repeat('x', 100) FROM generate_series(1, 20000) g;
         ANALYZE big;",
        proxy.url()
    ))
    .unwrap();
    // turso_start's own copy, before the replication exists for other sessions: the first of
    // its two tables.
    hold.store(true, std::sync::atomic::Ordering::SeqCst);
    let start = std::thread::spawn(|| {
        one(
            &mut pg().connect("worker_progress"),
            "SELECT turso_start('app')",
        )
    });
    let starting =
        "SELECT name, last_status, copying, (copy_rows <= 100)::text, copy_table_no::text,
                           copy_tables::text
                      FROM turso_replication_status WHERE kind = 'publication'";
    wait_for("turso_start's copy in the status view", || {
        pg_rows(&mut c, starting)
            == vec![vec![
                Some("app".into()),
                Some("copying".into()),
                Some("public.accounts".into()),
                Some("true".into()),
                Some("1".into()),
                Some("2".into()),
            ]]
    });
    hold.store(false, std::sync::atomic::Ordering::SeqCst);
    start.join().unwrap().unwrap();
    // A table that joins later, copied by the worker.
    hold.store(true, std::sync::atomic::Ordering::SeqCst);
    c.batch_execute("ALTER PUBLICATION app ADD TABLE big")
        .unwrap();
    let progress =
        "SELECT last_status, copying, (copy_rows < 20000)::text, copy_rows_estimate::text,
                           copy_table_no::text, copy_tables::text
                      FROM turso_replication_status WHERE kind = 'publication'";
    wait_for("the copy in the status view", || {
        pg_rows(&mut c, progress)
            == vec![vec![
                Some("copying".into()),
                Some("public.big".into()),
                Some("true".into()),
                Some("20000".into()),
                Some("1".into()),
                Some("1".into()),
            ]]
    });
    assert_eq!(
        pg_rows(
            &mut c,
            "SELECT command, type, relid::regclass::text FROM pg_stat_progress_copy"
        ),
        vec![vec![
            Some("COPY TO".into()),
            Some("CALLBACK".into()),
            Some("big".into())
        ]]
    );
    hold.store(false, std::sync::atomic::Ordering::SeqCst);
    wait_for("the copy in Turso", || {
        sqld.table_exists("big")
            && sqld.query_text("SELECT count(*) FROM big")[0][0].as_deref() == Some("20000")
    });
    wait_for("the copy gone from the status view", || {
        pg_rows(&mut c, progress)
            == vec![vec![Some("streaming".into()), None, None, None, None, None]]
    });
    one(&mut c, "SELECT turso_stop('app', drop => true)").unwrap();
}

/// A publication FOR ALL TABLES holds the extension's own tables too (`pgturso.publications`,
/// which the worker writes at every step that replicates): they are never replicated, and the
/// worker's own writes do not keep it busy.
#[test]
fn for_all_tables_leaves_the_extension_s_own_tables_out() {
    let sqld = Sqld::start("worker_all", false);
    let mut c = setup("worker_all", &sqld);
    c.batch_execute("CREATE PUBLICATION everything FOR ALL TABLES")
        .unwrap();
    one(&mut c, "SELECT turso_start('everything')").unwrap();
    for i in 0..5 {
        c.batch_execute(&format!("INSERT INTO other VALUES ({i})"))
            .unwrap();
        wait_for("the row in Turso", || {
            sqld.table_exists("other")
                && sqld.query_text("SELECT count(*) FROM other")[0][0] == Some((i + 1).to_string())
        });
    }
    assert!(mirrored(&mut c, &sqld));
    let tables = sqld.query_text("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY 1");
    assert_eq!(
        tables,
        [
            "_pgturso_progress",
            "_pgturso_schema",
            "accounts",
            "events",
            "other"
        ]
        .map(|t| vec![Some(t.to_string())])
    );
    one(&mut c, "SELECT turso_stop('everything', drop => true)").unwrap();
}

/// Group commit under lost responses: every third request to Turso is applied but its answer
/// never arrives. The worker's steps fail and are retried; Turso ends equal to PostgreSQL, with
/// no duplicate in the keyless table.
#[test]
fn lost_responses_to_group_commits_leave_no_duplicate() {
    let sqld = Sqld::start("worker_lost", true);
    let mut c = setup("worker_lost", &sqld);
    one(&mut c, "SELECT turso_start('app')").unwrap();
    let proxy = Proxy::start(sqld.port, |n| {
        if n % 3 == 2 {
            Action::ForwardThenDrop
        } else {
            Action::Forward
        }
    });
    c.batch_execute(&format!(
        "CREATE OR REPLACE FUNCTION turso_url() RETURNS text LANGUAGE sql AS $$ SELECT '{}' $$",
        proxy.url()
    ))
    .unwrap();
    for i in 0..40 {
        c.batch_execute(&format!(
            "INSERT INTO events VALUES ('lost {i}'); UPDATE accounts SET balance = balance + 1 WHERE id = {}",
            i % 5 + 1
        ))
        .unwrap();
        if i % 10 == 0 {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    wait_for("an exact mirror", || mirrored(&mut c, &sqld));
    assert!(
        proxy.requests.load(std::sync::atomic::Ordering::SeqCst) >= 3,
        "responses were lost"
    );
    one(&mut c, "SELECT turso_stop('app', drop => true)").unwrap();
}

/// `group_commit` is the worker's own: a decoding call that confirms as it goes would confirm
/// transactions Turso does not have yet.
#[test]
fn group_commit_outside_the_worker_is_refused() {
    let sqld = Sqld::start("worker_gc", false);
    let mut c = pg().fresh_db("worker_gc");
    c.batch_execute("SELECT pg_create_logical_replication_slot('gc', 'pgturso')")
        .unwrap();
    c.batch_execute("CREATE TABLE t(id int PRIMARY KEY); INSERT INTO t VALUES (1)")
        .unwrap();
    let url = sqld.url();
    let err = get_changes(
        &mut c,
        "gc",
        &[("url", url.as_str()), ("group_commit", "on")],
    )
    .unwrap_err();
    let (code, message, _, hint) = db_error(&err);
    assert_eq!(code, "22023", "{message}");
    assert_eq!(
        message,
        "option \"group_commit\" is only for pgturso's publication worker"
    );
    assert!(hint.contains("turso_start"), "{hint}");
    assert!(!sqld.table_exists("t"));
    assert_eq!(
        get_changes(&mut c, "gc", &[("url", url.as_str())])
            .unwrap()
            .len(),
        1
    );
}

/// A role that may start replications cannot make pgturso call, with the owner's rights,
/// a credential function it may not call itself (its result could show in an error).
#[test]
fn credential_functions_named_must_be_callable_by_the_caller() {
    let sqld = Sqld::start("worker_fn", true);
    let mut c = setup("worker_fn", &sqld);
    c.batch_execute(
        "DROP ROLE IF EXISTS w_user;
         CREATE ROLE w_user LOGIN;
         GRANT EXECUTE ON FUNCTION turso_start(text, regprocedure, regprocedure) TO w_user;
         ALTER PUBLICATION app OWNER TO w_user;
         CREATE FUNCTION secret() RETURNS text LANGUAGE sql AS $$ SELECT 'not for w_user' $$;
         REVOKE ALL ON FUNCTION secret() FROM PUBLIC;",
    )
    .unwrap();
    let mut w = postgres::Client::connect(
        &format!(
            "host=127.0.0.1 port={} user=w_user dbname=worker_fn",
            pg().port
        ),
        postgres::NoTls,
    )
    .unwrap();
    let err = w
        .batch_execute("SELECT turso_start('app', url_fn => 'secret()')")
        .unwrap_err();
    let (code, message, _, _) = db_error(&err);
    assert_eq!(code, "42501", "{message}");
    assert!(!message.contains("not for w_user"), "{message}");
    assert_eq!(
        one(
            &mut c,
            "SELECT count(*) FROM pg_replication_slots WHERE database = current_database()"
        )
        .unwrap(),
        "0",
        "nothing was created"
    );
    // With the default credential functions, the publication's owner may start it.
    assert!(one(&mut w, "SELECT turso_start('app')").is_some());
    drop(w);
    one(&mut c, "SELECT turso_stop('app', drop => true)").unwrap();
    c.batch_execute("DROP OWNED BY w_user; DROP ROLE w_user")
        .ok();
}

/// sqld killed while the worker replicates a stream of transactions, then started again (same
/// database file): the worker's steps fail meanwhile and it recovers by itself, with every
/// transaction in Turso exactly once.
#[test]
fn sqld_killed_and_restarted_while_the_worker_replicates() {
    let mut sqld = Sqld::start("worker_kill", true);
    let mut c = setup("worker_kill", &sqld);
    one(&mut c, "SELECT turso_start('app')").unwrap();
    for i in 0..60 {
        if i == 20 {
            sqld.kill();
        }
        if i == 40 {
            sqld.restart();
        }
        c.batch_execute(&format!(
            "INSERT INTO events VALUES ('kill {i}'); UPDATE accounts SET balance = balance + 1 WHERE id = {}",
            i % 7 + 1
        ))
        .unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    wait_for("recovery after the restart", || mirrored(&mut c, &sqld));
    one(&mut c, "SELECT turso_stop('app', drop => true)").unwrap();
}

/// A table added to the publication later is copied by the worker (its rows from before, then
/// its changes); one that leaves and comes back is copied again, with what changed meanwhile.
#[test]
fn a_table_added_to_the_publication_later_is_copied() {
    let sqld = Sqld::start("worker_added", false);
    let mut c = setup("worker_added", &sqld);
    one(&mut c, "SELECT turso_start('app')");
    c.batch_execute(
        "CREATE TABLE later_t(id int PRIMARY KEY, v text);
         INSERT INTO later_t SELECT g, 'before' FROM generate_series(1, 500) g;",
    )
    .unwrap();
    let same = |c: &mut postgres::Client| {
        sqld.table_exists("later_t")
            && sqld.query_text("SELECT count(*), sum(id), sum(length(v)) FROM later_t")
                == pg_rows(c, "SELECT count(*), sum(id), sum(length(v)) FROM later_t")
    };
    c.batch_execute("ALTER PUBLICATION app ADD TABLE later_t; UPDATE later_t SET v = 'after the add' WHERE id <= 10")
        .unwrap();
    wait_for("the added table's rows in Turso", || same(&mut c));
    c.batch_execute("UPDATE later_t SET v = 'later' WHERE id BETWEEN 11 AND 20")
        .unwrap();
    wait_for("its later changes", || same(&mut c));
    // Out of the publication, changed, back in: copied again.
    c.batch_execute("ALTER PUBLICATION app DROP TABLE later_t")
        .unwrap();
    c.batch_execute(
        "DELETE FROM later_t WHERE id > 400; UPDATE later_t SET v = 'while out' WHERE id <= 100",
    )
    .unwrap();
    c.batch_execute("ALTER PUBLICATION app ADD TABLE later_t")
        .unwrap();
    wait_for("the table copied again", || same(&mut c));
    assert!(mirrored(&mut c, &sqld));
    one(&mut c, "SELECT turso_stop('app')");
}

/// A column list in the worker's publication: the initial copy and every change carry only the
/// listed columns; `ALTER PUBLICATION … SET TABLE` with another list makes the worker copy the
/// table again with the new columns (PostgreSQL records a changed list as a new membership).
#[test]
fn a_column_list_is_copied_and_followed_and_a_new_list_copies_again() {
    let sqld = Sqld::start("worker_columns", false);
    let mut c = setup("worker_columns", &sqld);
    c.batch_execute(
        "CREATE TABLE people(id int PRIMARY KEY, name text, secret text, age int);
         INSERT INTO people SELECT g, 'n' || g, 'secret ' || g, g FROM generate_series(1, 300) g;",
    )
    .unwrap();
    c.batch_execute("CREATE PUBLICATION cols FOR TABLE people (id, name)")
        .unwrap();
    one(&mut c, "SELECT turso_start('cols')");
    let columns = || -> Vec<String> {
        sqld.query_text("SELECT name FROM pragma_table_info('people') ORDER BY cid")
            .into_iter()
            .map(|r| r[0].clone().unwrap_or_default())
            .collect()
    };
    let same = |c: &mut postgres::Client, cols: &str| {
        sqld.table_exists("people")
            && columns().join(", ") == cols
            && sqld.query_text(&format!("SELECT {cols} FROM people ORDER BY id"))
                == pg_rows(
                    c,
                    &format!(
                        "SELECT {} FROM people ORDER BY people.id",
                        cols.split(", ")
                            .map(|col| format!("{col}::text"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
    };
    wait_for("the copy of the listed columns", || {
        same(&mut c, "id, name")
    });
    c.batch_execute(
        "UPDATE people SET secret = 'changed', name = 'renamed' WHERE id <= 20;
         INSERT INTO people VALUES (1000, 'new', 'hidden', 1);
         DELETE FROM people WHERE id BETWEEN 21 AND 30;",
    )
    .unwrap();
    wait_for("the changes of the listed columns", || {
        same(&mut c, "id, name")
    });
    let everything = sqld.query_text("SELECT * FROM people").concat();
    assert!(
        everything
            .iter()
            .flatten()
            .all(|v| !v.contains("secret") && v != "changed" && v != "hidden"),
        "an unlisted column reached Turso"
    );
    c.batch_execute("ALTER PUBLICATION cols SET TABLE people (id, age)")
        .unwrap();
    c.batch_execute("UPDATE people SET age = age + 1000 WHERE id <= 5")
        .unwrap();
    wait_for("the table copied again with the new list", || {
        same(&mut c, "id, age")
    });
    c.batch_execute("UPDATE people SET age = 0, name = 'x' WHERE id BETWEEN 40 AND 50")
        .unwrap();
    wait_for("the new list's changes", || same(&mut c, "id, age"));
    one(&mut c, "SELECT turso_stop('cols', drop => true)");
}

/// A row filter in the worker's publication: the initial copy holds the passing rows only, and
/// rows that move into and out of the filter later are inserted and deleted in Turso.
#[test]
fn a_row_filter_is_copied_and_followed() {
    let sqld = Sqld::start("worker_filter", false);
    let mut c = setup("worker_filter", &sqld);
    c.batch_execute(
        "CREATE TABLE orders(id int PRIMARY KEY, status text, amount int);
         ALTER TABLE orders REPLICA IDENTITY FULL;
         INSERT INTO orders SELECT g, CASE WHEN g % 3 = 0 THEN 'draft' ELSE 'paid' END, g FROM generate_series(1, 200) g;",
    )
    .unwrap();
    c.batch_execute("CREATE PUBLICATION shop FOR TABLE orders WHERE (status <> 'draft')")
        .unwrap();
    one(&mut c, "SELECT turso_start('shop')");
    let same = |c: &mut postgres::Client| {
        sqld.table_exists("orders")
            && sqld.query_text("SELECT id, status, amount FROM orders ORDER BY id")
                == pg_rows(
                    c,
                    "SELECT id::text, status, amount::text FROM orders WHERE status <> 'draft' ORDER BY orders.id",
                )
    };
    wait_for("the copy of the passing rows", || same(&mut c));
    assert_eq!(
        sqld.query_text("SELECT count(*) FROM orders"),
        [[Some("134".to_string())]]
    );
    c.batch_execute(
        "UPDATE orders SET status = 'paid' WHERE id % 3 = 0 AND id <= 30;
         UPDATE orders SET status = 'draft' WHERE id % 3 = 1 AND id <= 30;
         UPDATE orders SET amount = amount + 1 WHERE id BETWEEN 31 AND 60;
         DELETE FROM orders WHERE id > 190;
         INSERT INTO orders VALUES (1000, 'draft', 1), (1001, 'paid', 2);",
    )
    .unwrap();
    wait_for("rows moving into and out of the filter", || same(&mut c));
    one(&mut c, "SELECT turso_stop('shop', drop => true)");
}

/// A group of many transactions that change the same rows over and over (hot rows, TOASTed values
/// left unchanged, deletes and inserts again, a key moved, keyless rows): the rows collapse into
/// one statement row each and Turso still ends exactly as PostgreSQL.
#[test]
fn hot_rows_in_a_group_collapse_and_stay_exact() {
    let sqld = Sqld::start("worker_hot", true);
    let mut c = setup("worker_hot", &sqld);
    c.batch_execute(
        "CREATE TABLE hot(id int PRIMARY KEY, n int NOT NULL, body text);
         ALTER TABLE hot ALTER COLUMN body SET STORAGE EXTERNAL;
         INSERT INTO hot SELECT g, 0, repeat(md5(g::text), 400) FROM generate_series(1, 5) g;
         ALTER PUBLICATION app ADD TABLE hot;",
    )
    .unwrap();
    one(&mut c, "SELECT turso_start('app')").unwrap();
    let hot = |c: &mut postgres::Client| {
        pg_rows(c, "SELECT id::text, n::text, body FROM hot ORDER BY hot.id")
    };
    // The initial copy reads the TOASTed values from the TOAST table (they once arrived NULL).
    assert_eq!(
        sqld.query_text("SELECT id, n, body FROM hot ORDER BY id"),
        hot(&mut c),
        "the initial copy"
    );
    // Stopped, so that the next start decodes everything below as one group.
    one(&mut c, "SELECT turso_stop('app')").unwrap();
    for i in 0..200 {
        c.batch_execute(&format!(
            "UPDATE hot SET n = n + 1 WHERE id = {};
             UPDATE accounts SET balance = balance + 1 WHERE id = 1;
             INSERT INTO events VALUES ('hot {i}');",
            i % 5 + 1
        ))
        .unwrap();
    }
    for sql in [
        "DELETE FROM hot WHERE id = 2; INSERT INTO hot VALUES (2, -1, repeat('new', 3000))",
        "INSERT INTO hot VALUES (6, 6, 'short'); DELETE FROM hot WHERE id = 6",
        "UPDATE hot SET body = repeat('changed', 2000) WHERE id = 3",
        "UPDATE hot SET n = n + 100 WHERE id = 3",
        "UPDATE hot SET id = 10 WHERE id = 4",
        "UPDATE hot SET n = 1000 WHERE id = 10",
        "DELETE FROM hot WHERE id = 5",
        "INSERT INTO hot VALUES (7, 7, repeat('x', 9000)); UPDATE hot SET n = 8 WHERE id = 7",
        "DELETE FROM events WHERE v IN ('hot 3', 'hot 4'); INSERT INTO events VALUES ('hot 3')",
    ] {
        c.batch_execute(sql).unwrap();
    }
    one(&mut c, "SELECT turso_start('app')").unwrap();
    wait_for("the group to replicate", || {
        let turso = sqld.query_text("SELECT id, n, length(body), body FROM hot ORDER BY id");
        let pg = pg_rows(
            &mut c,
            "SELECT id::text, n::text, length(body)::text, body FROM hot ORDER BY hot.id",
        );
        if turso != pg {
            let short = |rows: &[Vec<Option<String>>]| -> Vec<String> {
                rows.iter().map(|r| format!("{:?}", &r[..3])).collect()
            };
            eprintln!(
                "hot: Turso {:?}, PostgreSQL {:?}",
                short(&turso),
                short(&pg)
            );
        }
        mirrored(&mut c, &sqld) && turso == pg
    });
    assert_eq!(hot(&mut c).len(), 5);
}

/// `DROP EXTENSION` ends the worker and drops its slot (nothing would use it again, and it would
/// hold WAL back); `DROP DATABASE … WITH (FORCE)` terminates the worker, and the one PostgreSQL
/// starts again 5 s later finds its database gone and exits for good instead of failing to
/// connect every 5 seconds.
#[test]
fn drop_extension_and_drop_database_end_the_worker_for_good() {
    let sqld = Sqld::start("worker_drops", true);
    let mut c = setup("worker_drop_ext", &sqld);
    one(&mut c, "SELECT turso_start('app')").unwrap();
    let slot = one(&mut c, "SELECT slot FROM pgturso.publications").unwrap();
    wait_for("the worker to name itself", || worker_pid(&mut c).is_some());
    c.batch_execute("DROP EXTENSION pgturso").unwrap();
    wait_for("the worker to stop and drop its slot", || {
        worker_pid(&mut c).is_none()
            && one(
                &mut c,
                &format!(
                    "SELECT count(*)::text FROM pg_replication_slots WHERE slot_name = '{slot}'"
                ),
            )
            .as_deref()
                == Some("0")
    });

    let sqld = Sqld::start("worker_drops_db", true);
    let mut c = setup("worker_drop_db", &sqld);
    one(&mut c, "SELECT turso_start('app')").unwrap();
    let dboid = one(
        &mut c,
        "SELECT oid::text FROM pg_database WHERE datname = current_database()",
    )
    .unwrap();
    drop(c);
    let mut admin = pg().connect("postgres");
    // The slot is active only while a step decodes (other tests write WAL too): then PostgreSQL
    // refuses the drop, and it is tried again.
    wait_for("DROP DATABASE … WITH (FORCE)", || {
        match admin.batch_execute("DROP DATABASE worker_drop_db WITH (FORCE)") {
            Ok(()) => true,
            Err(e) if db_error(&e).1.contains("active logical replication slot") => false,
            Err(e) => panic!("DROP DATABASE: {e}"),
        }
    });
    let gone = format!("pgturso: database {dboid} of publication replication");
    wait_for("the restarted worker to find its database gone", || {
        pg().server_log().contains(&gone)
    });
    // A worker restarted while the drop was still going on may have failed to connect once
    // (PostgreSQL only then knows the database is gone); after the one that found it gone, none
    // is started again: wait longer than PostgreSQL's restart interval (5 s) and look.
    let failed = |log: &str| {
        log.matches(&format!("database {dboid} does not exist"))
            .count()
    };
    let before = failed(&pg().server_log());
    assert!(before <= 1, "{before} workers failed to connect");
    std::thread::sleep(Duration::from_secs(7));
    let log = pg().server_log();
    assert_eq!(
        log.matches(&gone).count(),
        1,
        "the worker was started again"
    );
    assert_eq!(failed(&log), before, "a worker tried to connect again");
}

/// The faults of a real deployment, one after another while an application keeps writing (a
/// pgbench-like stream of transactions on a keyed and a keyless table): the worker terminated,
/// every response of Turso lost after its commit, sqld killed and started again. After each the
/// worker recovers by itself, the status view says what is happening meanwhile (never the token),
/// and at the end Turso equals PostgreSQL with no duplicate.
#[test]
fn faults_under_load_are_recovered_from_and_shown_truly() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let mut sqld = Sqld::start("worker_faults", true);
    let lose = Arc::new(AtomicBool::new(false));
    let flag = lose.clone();
    let proxy = Proxy::start(sqld.port, move |_| {
        if flag.load(Ordering::SeqCst) {
            Action::ForwardThenDrop
        } else {
            Action::Forward
        }
    });
    let mut c = setup("worker_faults", &sqld);
    c.batch_execute(&format!(
        "CREATE OR REPLACE FUNCTION turso_url() RETURNS text LANGUAGE sql AS $$ SELECT '{}' $$",
        proxy.url()
    ))
    .unwrap();
    one(&mut c, "SELECT turso_start('app')").unwrap();
    let load = Load::start("worker_faults", Duration::from_millis(5), app_transaction);
    let loaded = |sqld: &Sqld| -> i64 {
        sqld.query_text("SELECT count(*) FROM events WHERE v LIKE 'load%'")[0][0]
            .as_deref()
            .unwrap_or("0")
            .parse()
            .unwrap()
    };
    let grows = |c: &mut postgres::Client, sqld: &Sqld, what: &str| {
        let before = loaded(sqld);
        wait_for(what, || loaded(sqld) > before);
        wait_for("streaming in the status view", || {
            status(c)[..2] == [Some("true".into()), Some("streaming".into())]
        });
    };
    grows(&mut c, &sqld, "the load in Turso");

    // The worker terminated: PostgreSQL starts it again, and it goes on.
    let pid = worker_pid(&mut c).unwrap();
    c.batch_execute(&format!("SELECT pg_terminate_backend({pid})"))
        .unwrap();
    wait_for("another worker", || {
        worker_pid(&mut c).is_some_and(|p| p != pid)
    });
    grows(&mut c, &sqld, "the load in Turso after the termination");

    // Every response lost after Turso committed: the worker cannot know, waits for Turso and
    // retries; the transactions Turso has are skipped by their progress row.
    lose.store(true, Ordering::SeqCst);
    wait_for("waiting for Turso while responses are lost", || {
        status(&mut c)[1].as_deref() == Some("waiting for Turso")
    });
    std::thread::sleep(Duration::from_secs(3));
    lose.store(false, Ordering::SeqCst);
    wait_for("streaming again after the lost responses", || {
        status(&mut c)[1].as_deref() == Some("streaming")
    });
    grows(&mut c, &sqld, "the load in Turso after the lost responses");

    // sqld killed, and started again on its data.
    sqld.kill();
    wait_for("waiting for Turso while sqld is down", || {
        status(&mut c)[1].as_deref() == Some("waiting for Turso")
    });
    let error = status(&mut c)[2].clone().unwrap_or_default();
    assert!(!error.is_empty(), "the status view names the error");
    assert!(!error.contains(sqld.token()), "{error}");
    std::thread::sleep(Duration::from_secs(3));
    sqld.restart();
    assert_eq!(
        proxy.url(),
        format!("http://127.0.0.1:{}/", proxy.port),
        "same proxy"
    );
    wait_for("streaming again after sqld's restart", || {
        status(&mut c)[1].as_deref() == Some("streaming")
    });
    grows(&mut c, &sqld, "the load in Turso after sqld's restart");

    let committed = load.stop();
    assert!(
        committed > 200,
        "the load committed {committed} transactions"
    );
    wait_for("an exact mirror", || mirrored(&mut c, &sqld));
    one(&mut c, "SELECT turso_stop('app', drop => true)").unwrap();
}

/// The group bound is a setting the worker reads (`pgturso.group_max_ms`): a bad value is an
/// `error` in the status view naming it, and replication goes on once it is mended.
#[test]
fn the_group_bound_setting_reaches_the_worker() {
    let sqld = Sqld::start("worker_gm", true);
    let mut c = setup("worker_gm", &sqld);
    one(&mut c, "SELECT turso_start('app')").unwrap();
    // One statement at a time: a worker reads the database's settings when it connects, which
    // may be before turso_start's transaction has ended.
    for sql in [
        "ALTER DATABASE worker_gm SET pgturso.group_max_ms = '0'",
        "SELECT turso_stop('app')",
        "SELECT turso_start('app')",
        "INSERT INTO events VALUES ('while misconfigured')",
    ] {
        c.batch_execute(sql).unwrap();
    }
    wait_for("the error in the status view", || {
        let s = status(&mut c);
        s[1].as_deref() == Some("error")
            && s[2].as_deref().is_some_and(|e| e.contains("group_max_ms"))
    });
    assert!(!mirrored(&mut c, &sqld));
    for sql in [
        "ALTER DATABASE worker_gm SET pgturso.group_max_ms = '50'",
        "SELECT turso_stop('app')",
        "SELECT turso_start('app')",
    ] {
        c.batch_execute(sql).unwrap();
    }
    wait_for("the mirror with the setting mended", || {
        mirrored(&mut c, &sqld)
    });
    one(&mut c, "SELECT turso_stop('app', drop => true)").unwrap();
}
