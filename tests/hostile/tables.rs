//! Hostile-input tests, 4: Turso tables that do not match, and damaged bookkeeping tables.

use super::*;

#[test]
fn turso_side_conflicts_fail_cleanly_and_recover() {
    let _g = group();
    let sqld = Sqld::start("h_conf", false);
    let (mut c, slot) = setup("h_conf");
    let url = sqld.url();
    let stmt_hint = "Check that the Turso table matches the PostgreSQL table";
    let replicate = |c: &mut Client| changes(c, &slot, &[("url", &url), ("retry_ms", "0")]);
    let mut k = Cases::new("turso-side conflicts");

    // Conflicting Turso tables: (what, Turso DDL, PostgreSQL DDL + DML, message parts, fix in Turso).
    let conflicts: [(&str, &str, &str, &[&str], &str); 4] = [
        (
            "Turso table lacks a column",
            "CREATE TABLE mc (id INTEGER PRIMARY KEY)",
            "CREATE TABLE mc(id int primary key, v text); INSERT INTO mc VALUES (1, 'x')",
            &["has no column named v", "(statement: INSERT INTO \"mc\""],
            "DROP TABLE mc",
        ),
        (
            "Turso column is NOT NULL",
            "CREATE TABLE nn (id INTEGER PRIMARY KEY, v TEXT NOT NULL)",
            "CREATE TABLE nn(id int primary key, v text); INSERT INTO nn VALUES (1, NULL)",
            &[
                "NOT NULL constraint failed: nn.v",
                "(statement: INSERT INTO \"nn\"",
            ],
            "DROP TABLE nn",
        ),
        (
            "STRICT Turso table with another type",
            "CREATE TABLE st (id INTEGER PRIMARY KEY, n INTEGER) STRICT",
            "CREATE TABLE st(id int primary key, n text); INSERT INTO st VALUES (1, 'abc')",
            &[
                "cannot store TEXT value in INTEGER column st.n",
                "(statement: INSERT INTO \"st\"",
            ],
            "DROP TABLE st",
        ),
        (
            "a Turso view with the table's name",
            "CREATE VIEW vw AS SELECT 1 AS id, 'x' AS v",
            "CREATE TABLE vw(id int primary key, v text); INSERT INTO vw VALUES (1, 'y')",
            &["vw", "(statement: "],
            "DROP VIEW vw",
        ),
    ];
    for (what, turso_ddl, pg_sql, parts, fix) in conflicts {
        k.run(what, || {
            sqld.query(turso_ddl);
            exec(&mut c, pg_sql);
            let before = confirmed_lsn(&mut c, &slot);
            let res = replicate(&mut c);
            let mut all = vec![
                "could not replicate transaction ",
                "to Turso: statement failed in Turso: ",
            ];
            all.extend_from_slice(parts);
            let (_, m, detail, _) = assert_fails(
                &mut c,
                &slot,
                &before,
                what,
                res,
                "38000",
                &has(&all),
                &[stmt_hint],
                &[],
            );
            eprintln!("{what}: {m}");
            assert!(detail.contains("slot did not advance"), "{what}: {detail}");
            sqld.query(fix);
            let out = replicate(&mut c)
                .unwrap_or_else(|e| panic!("{what}: after the fix: {:?}", db_error(&e)));
            assert_eq!(out.len(), 1, "{what}: {out:?}");
        });
    }
    k.run("data after the fixes", || {
        assert_eq!(
            sqld.query("SELECT id, v FROM mc"),
            vec![vec![json!(1), json!("x")]]
        );
        assert_eq!(
            sqld.query("SELECT id, v FROM nn"),
            vec![vec![json!(1), Json::Null]]
        );
        assert_eq!(
            sqld.query("SELECT id, n FROM st"),
            vec![vec![json!(1), json!("abc")]]
        );
        assert_eq!(
            sqld.query("SELECT id, v FROM vw"),
            vec![vec![json!(1), json!("y")]]
        );
    });

    k.run("unreadable _pgturso_schema row", || {
        exec(&mut c, "INSERT INTO mc VALUES (2, 'y')");
        let saved =
            sqld.query("SELECT source, definition FROM _pgturso_schema WHERE turso_name = 'mc'");
        sqld.query("UPDATE _pgturso_schema SET definition = '{not json' WHERE turso_name = 'mc'");
        let before = confirmed_lsn(&mut c, &slot);
        let res = replicate(&mut c);
        let fixed = format!(
            "UPDATE _pgturso_schema SET definition = {} WHERE turso_name = 'mc'",
            lit(saved[0][1].as_str().unwrap())
        );
        let check = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            assert_fails(
                &mut c,
                &slot,
                &before,
                "unreadable _pgturso_schema row",
                res,
                "08P01",
                &has(&[
                    "could not read pgturso's table bookkeeping (_pgturso_schema) from Turso: ",
                    "from Turso: invalid response from Turso: unreadable _pgturso_schema row for ",
                ]),
                &[],
                &[],
            );
        }));
        sqld.query(&fixed);
        replicate(&mut c).unwrap();
        if let Err(p) = check {
            std::panic::resume_unwind(p);
        }
    });

    k.run("text LSN in _pgturso_progress", || {
        exec(&mut c, "INSERT INTO mc VALUES (3, 'z')");
        let lsn = sqld.query(&format!(
            "SELECT lsn FROM _pgturso_progress WHERE slot = '{slot}'"
        ))[0][0]
            .as_i64()
            .unwrap();
        sqld.query("UPDATE _pgturso_progress SET lsn = 'garbage'");
        let before = confirmed_lsn(&mut c, &slot);
        let res = replicate(&mut c);
        let check = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            assert_fails(
                &mut c,
                &slot,
                &before,
                "text LSN in _pgturso_progress",
                res,
                "08P01",
                &has(&[
                    "could not read the replication progress",
                    "unexpected progress value",
                ]),
                &[],
                &[],
            );
        }));
        sqld.query(&format!("UPDATE _pgturso_progress SET lsn = {lsn}"));
        replicate(&mut c).unwrap();
        if let Err(p) = check {
            std::panic::resume_unwind(p);
        }
    });

    k.run(
        "_pgturso_progress replaced by a table of another shape",
        || {
            exec(&mut c, "INSERT INTO mc VALUES (4, 'w')");
            sqld.query("ALTER TABLE _pgturso_progress RENAME TO saved_progress");
            sqld.query("CREATE TABLE _pgturso_progress (x)");
            let before = confirmed_lsn(&mut c, &slot);
            let res = replicate(&mut c);
            let check = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let err = res.as_ref().err().map(db_error);
                eprintln!("_pgturso_progress of another shape: {err:?}");
                let code = err.as_ref().map_or("", |e| e.0.as_str()).to_string();
                assert!(code == "08006" || code == "38000", "{err:?}");
                assert_fails(
                    &mut c,
                    &slot,
                    &before,
                    "_pgturso_progress of another shape",
                    res,
                    &code,
                    &has(&["could not read the replication progress", "lsn"]),
                    &[],
                    &[],
                );
            }));
            sqld.query("DROP TABLE _pgturso_progress");
            sqld.query("ALTER TABLE saved_progress RENAME TO _pgturso_progress");
            replicate(&mut c).unwrap();
            if let Err(p) = check {
                std::panic::resume_unwind(p);
            }
            assert_eq!(
                sqld.query("SELECT id, v FROM mc ORDER BY id"),
                vec![
                    vec![json!(1), json!("x")],
                    vec![json!(2), json!("y")],
                    vec![json!(3), json!("z")],
                    vec![json!(4), json!("w")]
                ]
            );
        },
    );

    // Cases the Turso side cannot represent: a clean statement error naming the table; the
    // operator then skips the transaction.
    let poisoned: [(&str, &str, &[&str]); 3] = [
        ("PostgreSQL columns that differ only in case (SQLite names are case-insensitive)",
            "CREATE TABLE dup(\"ID\" int primary key, id int); INSERT INTO dup VALUES (1, 2)",
            &["duplicate column name", "\"dup\""]),
        ("a PostgreSQL table named like pgturso's progress table",
            "CREATE TABLE _pgturso_progress(id int primary key); INSERT INTO _pgturso_progress VALUES (1)",
            &["statement failed in Turso: ", "_pgturso_progress"]),
        ("a PostgreSQL table without columns (SQLite tables need one)",
            "CREATE TABLE nocols(); INSERT INTO nocols DEFAULT VALUES",
            &["\"nocols\""]),
    ];
    for (what, pg_sql, parts) in poisoned {
        exec(&mut c, pg_sql);
        k.run(what, || {
            let before = confirmed_lsn(&mut c, &slot);
            let res = replicate(&mut c);
            let mut all = vec!["could not replicate transaction "];
            all.extend_from_slice(parts);
            let (_, m, _, _) = assert_fails(
                &mut c,
                &slot,
                &before,
                what,
                res,
                "38000",
                &has(&all),
                &[stmt_hint],
                &[],
            );
            eprintln!("{what}: {m}");
        });
        skip_pending(&mut c, &slot);
    }
    k.run(
        "the progress table survived a user table of the same name",
        || {
            assert_eq!(
                sqld.query(&format!(
                    "SELECT count(*) FROM _pgturso_progress WHERE slot = '{slot}'"
                )),
                vec![vec![json!(1)]]
            );
        },
    );
    k.finish();
}
