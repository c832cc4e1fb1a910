//! End-to-end: PostgreSQL restored from a file-level backup taken before transactions that Turso
//! already has. Its own test binary, because it stops and replaces its cluster.

mod common;

use common::{confirmed_lsn, db_error, get_changes, pg, pg_rows, setup_slot, Sqld};

fn ids(sqld: &Sqld) -> Vec<i64> {
    sqld.query("SELECT id FROM t ORDER BY id")
        .into_iter()
        .map(|r| r[0].as_i64().unwrap())
        .collect()
}

#[test]
fn a_cluster_restored_from_a_backup_stops_with_an_error_instead_of_skipping_new_transactions() {
    let sqld = Sqld::start("restore", true);
    let (mut c, slot) = setup_slot("restore");
    let opts = [("url", sqld.url()), ("auth", sqld.token().to_string())];
    let opts: Vec<(&str, &str)> = opts.iter().map(|(k, v)| (*k, v.as_str())).collect();
    c.batch_execute("CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'a')")
        .unwrap();
    get_changes(&mut c, &slot, &opts).unwrap();
    assert_eq!(ids(&sqld), [1]);

    // A backup of the stopped cluster.
    drop(c);
    let backup = pg().data.with_file_name("backup");
    pg().stop();
    pg().copy_data(&backup);
    pg().start();

    // More transactions, replicated: Turso's progress row moves past the backup.
    let mut c = pg().connect("restore");
    for id in 2..=4 {
        c.execute("INSERT INTO t VALUES ($1, 'after the backup')", &[&id])
            .unwrap();
    }
    get_changes(&mut c, &slot, &opts).unwrap();
    assert_eq!(ids(&sqld), [1, 2, 3, 4]);
    let progress = sqld.query("SELECT lsn FROM _pgturso_progress")[0][0]
        .as_i64()
        .unwrap();

    // The backup goes back in place; the restored server writes new transactions, whose LSNs
    // are below Turso's progress row.
    drop(c);
    pg().stop();
    pg().restore_data(&backup);
    pg().start();
    let mut c = pg().connect("restore");
    c.batch_execute("INSERT INTO t VALUES (10, 'new after the restore')")
        .unwrap();
    let before = confirmed_lsn(&mut c, &slot);
    let err =
        get_changes(&mut c, &slot, &opts).expect_err("a restored server must not replicate on");
    let (code, message, detail, hint) = db_error(&err);
    assert_eq!(code, "55000", "{message}");
    assert!(
        message.contains(&slot) && message.contains("never committed"),
        "{message}"
    );
    assert!(detail.contains("restored from a backup"), "{detail}");
    assert!(hint.contains("_pgturso_progress"), "{hint}");
    assert!(!format!("{message}{detail}{hint}").contains(sqld.token()));
    assert_eq!(
        confirmed_lsn(&mut c, &slot),
        before,
        "the slot did not advance"
    );
    assert_eq!(ids(&sqld), [1, 2, 3, 4], "nothing applied, nothing skipped");

    // Still an error once the restored server's WAL has grown past Turso's progress LSN: the
    // record there is not the transaction Turso has.
    c.batch_execute("CREATE TABLE filler (b text)").unwrap();
    while pg_rows(&mut c, "SELECT pg_current_wal_lsn() - '0/0'::pg_lsn")[0][0]
        .as_ref()
        .unwrap()
        .parse::<i64>()
        .unwrap()
        <= progress + 65536
    {
        c.batch_execute("INSERT INTO filler SELECT repeat('x', 1000) FROM generate_series(1, 100)")
            .unwrap();
    }
    let err = get_changes(&mut c, &slot, &opts).expect_err("still diverged");
    assert_eq!(db_error(&err).0, "55000");
    assert_eq!(ids(&sqld), [1, 2, 3, 4]);

    // The documented way out: a new slot (and the progress row deleted) replicates again.
    sqld.query("DELETE FROM _pgturso_progress");
    c.batch_execute(&format!(
        "SELECT pg_drop_replication_slot('{slot}'); SELECT pg_create_logical_replication_slot('{slot}', 'pgturso');
         INSERT INTO t VALUES (11, 'replicated again')"
    ))
    .unwrap();
    get_changes(&mut c, &slot, &opts).unwrap();
    assert_eq!(ids(&sqld), [1, 2, 3, 4, 11]);
}
