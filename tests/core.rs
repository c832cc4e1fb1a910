//! End-to-end tests of the output plugin: a real PostgreSQL cluster and a real sqld (with JWT
//! auth) started by the harness; what lands in sqld is compared with PostgreSQL.

mod common;

use common::setup_slot as setup;

use std::time::{Duration, Instant};

use common::proxy::{Action, Proxy};
use common::{confirmed_lsn, db_error, get_changes, pg, pg_rows, Sqld};
use serde_json::{json, Value as Json};

fn changes_at(
    c: &mut postgres::Client,
    slot: &str,
    url: &str,
    token: &str,
) -> Result<Vec<String>, postgres::Error> {
    get_changes(c, slot, &[("url", url), ("auth", token)])
}

fn changes(c: &mut postgres::Client, slot: &str, s: &Sqld) -> Result<Vec<String>, postgres::Error> {
    changes_at(c, slot, &s.url(), s.token())
}

fn exec_each(c: &mut postgres::Client, stmts: &[&str]) {
    for s in stmts {
        c.batch_execute(s).unwrap_or_else(|e| panic!("{s}: {e}"));
    }
}

/// PostgreSQL rows of `sql` as JSON (integers as numbers, the rest as strings), to compare with sqld.
fn pg_json(c: &mut postgres::Client, sql: &str) -> Vec<Vec<Json>> {
    pg_rows(c, sql)
        .into_iter()
        .map(|r| {
            r.into_iter()
                .map(|v| match v {
                    None => Json::Null,
                    Some(s) => s.parse::<i64>().map(|i| json!(i)).unwrap_or(json!(s)),
                })
                .collect()
        })
        .collect()
}

#[test]
fn verbatim_flow_replicates_two_rows_with_auth() {
    let sqld = Sqld::start("verbatim", true);
    let mut c = pg().fresh_db("verbatim");
    exec_each(
        &mut c,
        &[
            "SELECT pg_create_logical_replication_slot('pgturso_slot', 'pgturso')",
            "DROP TABLE IF EXISTS t",
            "CREATE TABLE t(id int primary key, v text, v1 text, v2 int)",
            "INSERT INTO t VALUES (45, 'hey', 'turso', 14)",
            "INSERT INTO t VALUES (46, 'hello', 'postgres', 15)",
        ],
    );
    let out = changes(&mut c, "pgturso_slot", &sqld).unwrap();
    assert_eq!(
        out.len(),
        2,
        "one output row per replicated transaction: {out:?}"
    );
    for line in &out {
        assert!(
            line.starts_with("COMMIT ") && line.ends_with(": 1 change"),
            "{line}"
        );
        assert!(!line.contains(sqld.token()));
    }
    assert_eq!(
        sqld.query("SELECT id, v, v1, v2 FROM t ORDER BY id"),
        vec![
            vec![json!(45), json!("hey"), json!("turso"), json!(14)],
            vec![json!(46), json!("hello"), json!("postgres"), json!(15)],
        ]
    );
    // Nothing new: nothing sent, nothing printed.
    assert!(changes(&mut c, "pgturso_slot", &sqld).unwrap().is_empty());
    c.batch_execute("SELECT pg_drop_replication_slot('pgturso_slot')")
        .unwrap();
}

#[test]
fn insert_update_delete_truncate_and_types() {
    let sqld = Sqld::start("iudt", true);
    let (mut c, slot) = setup("iudt");
    exec_each(
        &mut c,
        &[
            "CREATE TABLE t(id int8 primary key, s int2, i int4, r4 float4, r8 float8, b bool, tx text, vc varchar(10))",
            "CREATE TABLE other(id int primary key)",
            "INSERT INTO t VALUES (1, 1, 10, 1.5, 0.1, true, 'one', 'a'), (2, -32768, 2147483647, -2.25, 1e300, false, NULL, NULL),
                                  (9223372036854775807, 0, 0, 0, -0.000001, NULL, 'üñí ''q'' \"d\"', 'z')",
            "INSERT INTO other VALUES (1), (2)",
            "UPDATE t SET tx = 'uno', r8 = 2.5 WHERE id = 1",
            "DELETE FROM t WHERE id = 2",
            "TRUNCATE other",
            "INSERT INTO other VALUES (3)",
        ],
    );
    let out = changes(&mut c, &slot, &sqld).unwrap();
    assert_eq!(out.len(), 6, "{out:?}");
    let turso = sqld.query("SELECT id, s, i, r4, r8, b, tx, vc FROM t ORDER BY id");
    assert_eq!(
        turso,
        vec![
            vec![
                json!(1),
                json!(1),
                json!(10),
                json!(1.5),
                json!(2.5),
                json!(1),
                json!("uno"),
                json!("a")
            ],
            vec![
                json!(9223372036854775807i64),
                json!(0),
                json!(0),
                json!(0.0),
                json!(-0.000001),
                Json::Null,
                json!("üñí 'q' \"d\""),
                json!("z")
            ],
        ]
    );
    assert_eq!(sqld.query("SELECT id FROM other"), vec![vec![json!(3)]]);
    // Declared types follow the type map.
    let decl = sqld.query("SELECT name, type FROM pragma_table_info('t') ORDER BY cid");
    let types: Vec<&str> = decl.iter().map(|r| r[1].as_str().unwrap()).collect();
    assert_eq!(
        types,
        ["INTEGER", "INTEGER", "INTEGER", "REAL", "REAL", "INTEGER", "TEXT", "TEXT"]
    );
}

#[test]
fn composite_key_and_key_change_move_rows() {
    let sqld = Sqld::start("ckey", false);
    let (mut c, slot) = setup("ckey");
    exec_each(
        &mut c,
        &[
            "CREATE TABLE t(a int, b text, v text, PRIMARY KEY (a, b))",
            "INSERT INTO t VALUES (1, 'x', 'v1'), (1, 'y', 'v2'), (2, 'x', 'v3')",
            "UPDATE t SET b = 'z', v = 'moved' WHERE a = 1 AND b = 'x'",
            "UPDATE t SET a = 3 WHERE a = 2",
            "DELETE FROM t WHERE a = 1 AND b = 'y'",
        ],
    );
    changes_at(&mut c, &slot, &sqld.url(), "").unwrap();
    let pg_side = pg_json(&mut c, "SELECT a, b, v FROM t ORDER BY a, b");
    assert_eq!(sqld.query("SELECT a, b, v FROM t ORDER BY a, b"), pg_side);
    assert_eq!(pg_side.len(), 2);
    let pk = sqld.query("SELECT name FROM pragma_table_info('t') WHERE pk > 0 ORDER BY pk");
    assert_eq!(pk, vec![vec![json!("a")], vec![json!("b")]]);
}

#[test]
fn replica_identity_full_without_key_matches_one_row() {
    let sqld = Sqld::start("fullid", false);
    let (mut c, slot) = setup("fullid");
    exec_each(
        &mut c,
        &[
            "CREATE TABLE t(a int, b text)",
            "ALTER TABLE t REPLICA IDENTITY FULL",
            "INSERT INTO t VALUES (1, 'dup'), (1, 'dup'), (2, NULL), (2, NULL)",
            "DELETE FROM t WHERE ctid = (SELECT min(ctid) FROM t WHERE a = 1)",
            "UPDATE t SET b = 'set' WHERE ctid = (SELECT min(ctid) FROM t WHERE a = 2)",
        ],
    );
    changes_at(&mut c, &slot, &sqld.url(), "").unwrap();
    let pg_side = pg_json(&mut c, "SELECT a, b FROM t ORDER BY a, b NULLS LAST");
    assert_eq!(pg_side.len(), 3);
    assert_eq!(
        sqld.query("SELECT a, b FROM t ORDER BY a, b IS NULL, b"),
        pg_side
    );
}

#[test]
fn table_without_key_fails_clearly_and_keeps_the_slot() {
    let sqld = Sqld::start("nokey", false);
    let (mut c, slot) = setup("nokey");
    exec_each(
        &mut c,
        &[
            "CREATE TABLE nk(a int, b text)",
            "INSERT INTO nk VALUES (1, 'x')",
        ],
    );
    let before = confirmed_lsn(&mut c, &slot);
    exec_each(&mut c, &["UPDATE nk SET b = 'y'"]);
    let err = changes_at(&mut c, &slot, &sqld.url(), "").unwrap_err();
    let (code, msg, _, hint) = db_error(&err);
    assert_eq!(code, "55000");
    assert!(
        msg.contains("\"public.nk\"") && msg.contains("UPDATE"),
        "{msg}"
    );
    assert!(
        hint.contains("primary key") && hint.contains("REPLICA IDENTITY FULL"),
        "{hint}"
    );
    assert_eq!(
        confirmed_lsn(&mut c, &slot),
        before,
        "slot must not advance"
    );
    // The earlier INSERT transaction landed; the failing UPDATE did not.
    assert_eq!(
        sqld.query("SELECT a, b FROM nk"),
        vec![vec![json!(1), json!("x")]]
    );
    // Following the hint fixes it for the changes decoded from then on.
    exec_each(
        &mut c,
        &[
            "ALTER TABLE nk REPLICA IDENTITY FULL",
            "UPDATE nk SET b = 'z'",
        ],
    );
    let err = changes_at(&mut c, &slot, &sqld.url(), "").unwrap_err();
    assert_eq!(
        db_error(&err).0,
        "55000",
        "the old UPDATE is still decoded first"
    );
}

#[test]
fn table_name_filter_replicates_only_that_table() {
    let sqld = Sqld::start("filter", false);
    let (mut c, slot) = setup("filter");
    exec_each(
        &mut c,
        &[
            "CREATE SCHEMA s",
            "CREATE TABLE a(id int primary key)",
            "CREATE TABLE s.a(id int primary key)",
            "INSERT INTO a VALUES (1)",
            "INSERT INTO s.a VALUES (2)",
        ],
    );
    let out = get_changes(
        &mut c,
        &slot,
        &[("url", &sqld.url()), ("table_name", "s.a")],
    )
    .unwrap();
    assert_eq!(out.len(), 1, "{out:?}");
    assert!(!sqld.table_exists("a"));
    assert_eq!(sqld.query("SELECT id FROM \"s.a\""), vec![vec![json!(2)]]);
    exec_each(
        &mut c,
        &["INSERT INTO a VALUES (3)", "INSERT INTO s.a VALUES (4)"],
    );
    get_changes(&mut c, &slot, &[("url", &sqld.url()), ("table_name", "A")]).unwrap();
    assert_eq!(sqld.query("SELECT id FROM a"), vec![vec![json!(3)]]);
    assert_eq!(
        sqld.query("SELECT count(*) FROM \"s.a\""),
        vec![vec![json!(1)]]
    );
}

#[test]
fn rolled_back_work_never_arrives() {
    let sqld = Sqld::start("rollback", false);
    let (mut c, slot) = setup("rollback");
    exec_each(
        &mut c,
        &[
            "CREATE TABLE t(id int primary key, v text)",
            "BEGIN; INSERT INTO t VALUES (1, 'rolled back'); ROLLBACK",
            "BEGIN; INSERT INTO t VALUES (2, 'kept'); SAVEPOINT sp; INSERT INTO t VALUES (3, 'sp'); UPDATE t SET v = 'sp' WHERE id = 2; ROLLBACK TO SAVEPOINT sp; INSERT INTO t VALUES (4, 'after'); COMMIT",
        ],
    );
    let out = changes_at(&mut c, &slot, &sqld.url(), "").unwrap();
    assert_eq!(
        out.len(),
        1,
        "the rolled-back transaction sends nothing: {out:?}"
    );
    assert!(out[0].ends_with(": 2 changes"), "{out:?}");
    assert_eq!(
        sqld.query("SELECT id, v FROM t ORDER BY id"),
        vec![
            vec![json!(2), json!("kept")],
            vec![json!(4), json!("after")]
        ]
    );
}

#[test]
fn a_transaction_lands_whole_or_not_at_all() {
    let sqld = Sqld::start("atomic", false);
    // A Turso-side constraint makes the second row of the transaction fail.
    sqld.query("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT CHECK (v <> 'bad'))");
    let (mut c, slot) = setup("atomic");
    exec_each(
        &mut c,
        &[
            "CREATE TABLE t(id int primary key, v text)",
            "BEGIN; INSERT INTO t VALUES (1, 'ok'); INSERT INTO t VALUES (2, 'bad'); COMMIT",
        ],
    );
    let before = confirmed_lsn(&mut c, &slot);
    let err = changes_at(&mut c, &slot, &sqld.url(), "").unwrap_err();
    let (_, msg, _, _) = db_error(&err);
    assert!(msg.contains("CHECK constraint failed"), "{msg}");
    assert!(msg.contains("could not replicate transaction"), "{msg}");
    assert_eq!(
        sqld.query("SELECT count(*) FROM t"),
        vec![vec![json!(0)]],
        "first row rolled back"
    );
    assert_eq!(confirmed_lsn(&mut c, &slot), before);
    // Fix the Turso side and re-run: everything arrives once.
    sqld.query("DROP TABLE t");
    changes_at(&mut c, &slot, &sqld.url(), "").unwrap();
    assert_eq!(
        sqld.query("SELECT id, v FROM t ORDER BY id"),
        vec![vec![json!(1), json!("ok")], vec![json!(2), json!("bad")]]
    );
}

/// A keyless table: a duplicate apply would show up as an extra row.
fn keyless_workload(c: &mut postgres::Client, n: i32) {
    exec_each(
        c,
        &[
            "CREATE TABLE log(n int, v text)",
            "ALTER TABLE log REPLICA IDENTITY FULL",
        ],
    );
    for i in 1..=n {
        c.batch_execute(&format!("INSERT INTO log VALUES ({i}, 'row {i}')"))
            .unwrap();
    }
}

fn assert_exact_log(sqld: &Sqld, n: i64) {
    let rows = sqld.query("SELECT n, count(*) FROM log GROUP BY n ORDER BY n");
    let expected: Vec<Vec<Json>> = (1..=n).map(|i| vec![json!(i), json!(1)]).collect();
    assert_eq!(rows, expected, "every row exactly once");
}

#[test]
fn sqld_killed_mid_call_then_rerun_gives_exact_mirror() {
    let mut sqld = Sqld::start("killed", false);
    let (mut c, slot) = setup("killed");
    keyless_workload(&mut c, 10);
    let before = confirmed_lsn(&mut c, &slot);
    // Request 0 reads progress, 1 the table shapes, 2.. are transactions: kill sqld for real
    // before the 5th transaction.
    let pid = sqld.pid().unwrap();
    let proxy = Proxy::start(sqld.port, move |n| {
        if n == 6 {
            let _ = std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status();
            std::thread::sleep(Duration::from_millis(200));
        }
        Action::Forward
    });
    // No retries here: this test is about the ERROR and the slot (retries: tests/faults.rs).
    let err = get_changes(&mut c, &slot, &[("url", &proxy.url()), ("retry_ms", "0")]).unwrap_err();
    let (code, msg, detail, _) = db_error(&err);
    assert!(code.starts_with("08"), "{code} {msg}");
    assert!(
        msg.contains("could not replicate transaction") && msg.contains('/'),
        "{msg}"
    );
    assert!(detail.contains("slot did not advance"), "{detail}");
    assert_eq!(
        confirmed_lsn(&mut c, &slot),
        before,
        "slot must not advance"
    );
    sqld.restart();
    assert_eq!(
        sqld.query("SELECT count(*) FROM log"),
        vec![vec![json!(4)]],
        "4 transactions landed before the kill"
    );
    let out = changes(&mut c, &slot, &sqld).unwrap();
    assert_eq!(
        out.len(),
        6,
        "the 4 applied transactions are skipped: {out:?}"
    );
    assert_exact_log(&sqld, 10);
    assert_ne!(confirmed_lsn(&mut c, &slot), before);
}

#[test]
fn response_lost_after_commit_is_not_applied_twice() {
    let sqld = Sqld::start("lost", false);
    let (mut c, slot) = setup("lost");
    keyless_workload(&mut c, 5);
    // The 3rd transaction (request 4: after the progress and schema reads) commits in sqld,
    // but its response never comes back.
    let proxy = Proxy::start(sqld.port, |n| {
        if n == 4 {
            Action::ForwardThenDrop
        } else {
            Action::Forward
        }
    });
    // No retries: the ERROR path (tests/faults.rs covers the retry that resolves it in one call).
    let err = get_changes(&mut c, &slot, &[("url", &proxy.url()), ("retry_ms", "0")]).unwrap_err();
    let (code, msg, _, _) = db_error(&err);
    assert!(code.starts_with("08"), "{code} {msg}");
    assert_eq!(sqld.query("SELECT count(*) FROM log"), vec![vec![json!(3)]]);
    let out = changes(&mut c, &slot, &sqld).unwrap();
    assert_eq!(out.len(), 2, "{out:?}");
    assert_exact_log(&sqld, 5);
    // peek does not advance the slot, yet re-peeking applies nothing twice.
    c.batch_execute("INSERT INTO log VALUES (6, 'row 6')")
        .unwrap();
    for _ in 0..2 {
        c.query(
            "SELECT data FROM pg_logical_slot_peek_changes($1, NULL, NULL, 'url', $2)",
            &[&slot, &sqld.url()],
        )
        .unwrap();
    }
    assert_exact_log(&sqld, 6);
}

#[test]
fn wrong_token_is_an_authentication_error_and_keeps_the_slot() {
    let sqld = Sqld::start("badtoken", true);
    let (mut c, slot) = setup("badtoken");
    exec_each(
        &mut c,
        &[
            "CREATE TABLE t(id int primary key)",
            "INSERT INTO t VALUES (1)",
        ],
    );
    let before = confirmed_lsn(&mut c, &slot);
    let bad = "eyJhbGciOiJFZERTQSJ9.eyJhIjoicncifQ.not-a-valid-signature-s3cr3t";
    for token in [bad, ""] {
        let err = changes_at(&mut c, &slot, &sqld.url(), token).unwrap_err();
        let (code, msg, detail, hint) = db_error(&err);
        assert_eq!(code, "28000", "{msg}");
        assert!(msg.contains("authentication failed (HTTP 401)"), "{msg}");
        assert!(hint.contains("\"auth\""), "{hint}");
        for field in [&msg, &detail, &hint] {
            assert!(
                token.is_empty() || !field.contains(token),
                "token leaked: {field}"
            );
        }
    }
    assert_eq!(confirmed_lsn(&mut c, &slot), before);
    changes(&mut c, &slot, &sqld).unwrap();
    assert_eq!(sqld.query("SELECT id FROM t"), vec![vec![json!(1)]]);
}

#[test]
fn bad_options_fail_in_postgres_wording() {
    let (mut c, slot) = setup("badopts");
    exec_each(
        &mut c,
        &[
            "CREATE TABLE t(id int primary key)",
            "INSERT INTO t VALUES (1)",
        ],
    );
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
    let cases: &[Case] = &[
        (
            &[("url", "http://127.0.0.1:1/"), ("colour", "blue")],
            "22023",
            "option \"colour\" = \"blue\" is unknown",
        ),
        (
            &[
                ("url", "http://127.0.0.1:1/"),
                ("url", "http://127.0.0.1:2/"),
            ],
            "42601",
            "conflicting or redundant options",
        ),
        (
            &[("url", "ftp://127.0.0.1/")],
            "22023",
            "could not parse value \"ftp://127.0.0.1/\" for parameter \"url\"",
        ),
        (
            &[("url", "http://127.0.0.1:1/"), ("timeout_ms", "soon")],
            "22023",
            "could not parse value \"soon\" for parameter \"timeout_ms\"",
        ),
        (&[("auth", "x")], "22023", "option \"url\" is required"),
        (
            &[("url", "http://127.0.0.1:1/"), ("table_name", "a.b.c")],
            "22023",
            "could not parse value \"a.b.c\" for parameter \"table_name\"",
        ),
    ];
    let before = confirmed_lsn(&mut c, &slot);
    for (opts, code, msg) in cases {
        let err = get_changes(&mut c, &slot, opts).unwrap_err();
        let (got_code, got_msg, _, _) = db_error(&err);
        assert_eq!((got_code.as_str(), got_msg.as_str()), (*code, *msg));
    }
    // Unreachable host: a connection error naming the URL, slot unchanged.
    let err = get_changes(
        &mut c,
        &slot,
        &[("url", "http://127.0.0.1:1/"), ("retry_ms", "300")],
    )
    .unwrap_err();
    let (code, msg, _, _) = db_error(&err);
    assert_eq!(code, "08006", "{msg}");
    assert!(
        msg.contains("could not connect to \"http://127.0.0.1:1/v2/pipeline\""),
        "{msg}"
    );
    assert_eq!(confirmed_lsn(&mut c, &slot), before);
}

#[test]
fn statement_timeout_interrupts_a_hanging_request() {
    let sqld = Sqld::start("hang", false);
    let (mut c, slot) = setup("hang");
    exec_each(
        &mut c,
        &[
            "CREATE TABLE t(id int primary key)",
            "INSERT INTO t VALUES (1)",
        ],
    );
    let proxy = Proxy::start(sqld.port, |_| Action::Delay(Duration::from_secs(60)));
    c.batch_execute("SET statement_timeout = '1s'").unwrap();
    let start = Instant::now();
    let err = changes_at(&mut c, &slot, &proxy.url(), "").unwrap_err();
    let elapsed = start.elapsed();
    let (code, msg, _, _) = db_error(&err);
    assert_eq!(code, "57014", "{msg}");
    assert!(elapsed < Duration::from_secs(4), "cancel took {elapsed:?}");
    c.batch_execute("RESET statement_timeout").unwrap();
    changes(&mut c, &slot, &sqld).unwrap();
    assert_eq!(sqld.query("SELECT id FROM t"), vec![vec![json!(1)]]);
}

#[test]
fn token_never_reaches_output_errors_or_server_log() {
    let sqld = Sqld::start("secret", true);
    let (mut c, slot) = setup("secret");
    let token = sqld.token().to_string();
    // PostgreSQL itself logs every statement's text at debug2 and below (and with log_statement),
    // so a token typed into SQL is only safe at the levels below; the SQL helpers keep it out of
    // the statement text altogether. What the plugin controls: its own errors never carry the
    // statement (which holds the token) into the log.
    c.batch_execute("SET log_min_messages = debug1").unwrap();
    exec_each(
        &mut c,
        &[
            "CREATE TABLE t(id int primary key)",
            "INSERT INTO t VALUES (1)",
        ],
    );
    // A failing call (sqld down) and a succeeding one, both with the real token.
    let dead = format!("http://127.0.0.1:{}/", common::free_port());
    let err = get_changes(
        &mut c,
        &slot,
        &[("url", &dead), ("auth", &token), ("retry_ms", "300")],
    )
    .unwrap_err();
    let (_, msg, detail, hint) = db_error(&err);
    let out = changes(&mut c, &slot, &sqld).unwrap();
    assert_eq!(out.len(), 1);
    // A wrong token from the same family must not leak either.
    let sig_start = token.rfind('.').unwrap() + 1;
    let flipped = if &token[sig_start..sig_start + 1] == "A" {
        "B"
    } else {
        "A"
    };
    let wrong = format!(
        "{}{flipped}{}",
        &token[..sig_start],
        &token[sig_start + 1..]
    );
    c.batch_execute("INSERT INTO t VALUES (2)").unwrap();
    let err2 = changes_at(&mut c, &slot, &sqld.url(), &wrong).unwrap_err();
    let texts = [msg, detail, hint, out.join("\n"), format!("{err2:?}")];
    assert_eq!(db_error(&err2).0, "28000");
    for t in &texts {
        assert!(!t.contains(&token) && !t.contains(&wrong), "token in {t}");
    }
    drop(c);
    std::thread::sleep(Duration::from_millis(300));
    let log = pg().server_log();
    let failure = log
        .lines()
        .position(|l| l.contains("ERROR:") && l.contains("could not connect"))
        .expect("the failure was logged");
    let after: Vec<&str> = log.lines().skip(failure + 1).take(3).collect();
    assert!(
        !after
            .iter()
            .any(|l| l.contains("STATEMENT:") && l.contains("slot_secret")),
        "statement logged with the error: {after:?}"
    );
    let leaks: Vec<&str> = log.lines().filter(|l| l.contains(&token)).collect();
    assert!(
        leaks.is_empty(),
        "token found in the server log: {leaks:#?}"
    );
    assert!(!log.contains(&wrong), "wrong token found in the server log");
}

#[test]
fn pg_recvlogical_streams_into_turso() {
    let sqld = Sqld::start("recv", true);
    let (mut c, slot) = setup("recv");
    c.batch_execute("CREATE TABLE t(id int primary key, v text)")
        .unwrap();
    let out_file = std::env::temp_dir().join(format!("pgturso-recv-{}.out", std::process::id()));
    let mut child = common::recvlogical_cmd(
        "recv",
        &slot,
        &[
            format!("url={}", sqld.url()),
            format!("auth={}", sqld.token()),
        ],
    )
    .arg("-f")
    .arg(&out_file)
    .spawn()
    .unwrap();
    for i in 1..=3 {
        c.batch_execute(&format!("INSERT INTO t VALUES ({i}, 'v{i}')"))
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let n = if sqld.table_exists("t") {
            sqld.query("SELECT count(*) FROM t")[0][0].as_i64().unwrap()
        } else {
            0
        };
        if n == 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "pg_recvlogical did not replicate (have {n})"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(1500));
    let _ = child.kill();
    let _ = child.wait();
    let written = std::fs::read_to_string(&out_file).unwrap_or_default();
    assert_eq!(
        written.lines().filter(|l| l.starts_with("COMMIT ")).count(),
        3,
        "{written}"
    );
    assert!(!written.contains(sqld.token()));
    let _ = std::fs::remove_file(out_file);
}

/// Option auth_file: the token comes from a file of $PGDATA/pgturso/, so it is in no statement
/// text; a path instead of a file name is refused.
#[test]
fn auth_file_gives_the_token_without_it_in_the_statement() {
    let sqld = Sqld::start("authfile", true);
    let (mut c, slot) = setup("authfile");
    let dir = pg().data.join("pgturso");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("authfile"), format!("{}\n", sqld.token())).unwrap();
    exec_each(
        &mut c,
        &[
            "CREATE TABLE t(id int primary key, v text)",
            "INSERT INTO t VALUES (1, 'from a token file')",
        ],
    );
    let url = sqld.url();
    let opts = [("url", url.as_str()), ("auth_file", "authfile")];
    let out = get_changes(&mut c, &slot, &opts).unwrap();
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(
        sqld.query("SELECT id, v FROM t"),
        vec![vec![json!(1), json!("from a token file")]]
    );
    let err = get_changes(
        &mut c,
        &slot,
        &[("url", url.as_str()), ("auth_file", "../postgresql.conf")],
    )
    .unwrap_err();
    let (code, message, _, hint) = db_error(&err);
    assert_eq!(code, "22023", "{message}");
    assert!(hint.contains("not a path"), "{hint}");
    let err = get_changes(
        &mut c,
        &slot,
        &[("url", url.as_str()), ("auth_file", "missing")],
    )
    .unwrap_err();
    assert!(
        db_error(&err).3.contains("$PGDATA/pgturso/missing"),
        "{err}"
    );
    std::fs::remove_file(dir.join("authfile")).unwrap();
}

/// Unquoted names fold like PostgreSQL's (ASCII letters only, in UTF-8), so table_name finds a
/// table whose name has non-ASCII capitals; a table with a primary key but REPLICA IDENTITY
/// NOTHING gets an error that names that cause.
#[test]
fn table_name_folds_like_postgresql_and_identity_nothing_is_named() {
    let sqld = Sqld::start("fold", true);
    let (mut c, slot) = setup("fold");
    exec_each(
        &mut c,
        &[
            "CREATE TABLE Ärger(id int primary key, v text)",
            "CREATE TABLE other(id int primary key)",
            "INSERT INTO Ärger VALUES (1, 'ä')",
            "INSERT INTO other VALUES (1)",
        ],
    );
    let url = sqld.url();
    let opts = [
        ("url", url.as_str()),
        ("auth", sqld.token()),
        ("table_name", "Ärger"),
    ];
    let out = get_changes(&mut c, &slot, &opts).unwrap();
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(
        sqld.query("SELECT id, v FROM \"Ärger\""),
        vec![vec![json!(1), json!("ä")]]
    );
    assert!(!sqld.table_exists("other"));
    exec_each(
        &mut c,
        &[
            "ALTER TABLE Ärger REPLICA IDENTITY NOTHING",
            "DELETE FROM Ärger",
        ],
    );
    let err = get_changes(&mut c, &slot, &opts).unwrap_err();
    let (code, message, _, hint) = db_error(&err);
    assert_eq!(code, "55000", "{message}");
    assert!(message.contains("REPLICA IDENTITY NOTHING"), "{message}");
    assert!(hint.contains("REPLICA IDENTITY DEFAULT"), "{hint}");
}
