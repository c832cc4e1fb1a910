//! Schema changes that SQLite cannot `ALTER` its way through (issue 16): key and replica
//! identity changes rebuild the Turso table, column type changes carry every row in its new
//! representation. Each step compares the whole Turso table with PostgreSQL.

mod common;

use common::{assert_same_table, get_changes, pg_rows, setup_slot, Sqld};

/// The Turso table's key columns, in order (`pragma_table_info`'s pk).
fn turso_key(sqld: &Sqld, table: &str) -> Vec<String> {
    sqld.query_text(&format!(
        "SELECT name FROM pragma_table_info('{table}') WHERE pk > 0 ORDER BY pk"
    ))
    .into_iter()
    .map(|r| r[0].clone().unwrap())
    .collect()
}

/// The Turso table's unique indexes' columns (a replica identity index other than the key).
fn turso_unique(sqld: &Sqld, table: &str) -> Vec<String> {
    sqld.query_text(&format!(
        "SELECT ii.name FROM pragma_index_list('{table}') AS il, pragma_index_info(il.name) AS ii \
         WHERE il.\"unique\" AND il.origin = 'u' ORDER BY ii.seqno"
    ))
    .into_iter()
    .map(|r| r[0].clone().unwrap())
    .collect()
}

/// SQLite's storage class of each row's `col`, ordered by the first column.
fn storage(sqld: &Sqld, table: &str, col: &str) -> Vec<String> {
    sqld.query_text(&format!(
        "SELECT typeof(\"{col}\") FROM \"{table}\" WHERE \"{col}\" IS NOT NULL ORDER BY 1"
    ))
    .into_iter()
    .map(|r| r[0].clone().unwrap())
    .collect()
}

#[test]
fn key_and_identity_changes_rebuild_the_turso_table() {
    let sqld = Sqld::start("schema_keys", false);
    let (mut c, slot) = setup_slot("schema_keys");
    let url = sqld.url();
    let sync = |c: &mut postgres::Client| {
        get_changes(c, &slot, &[("url", url.as_str())]).unwrap();
        assert_same_table(c, &sqld, "k", "k");
    };
    // Loaded first, keyed afterwards (pgbench -i, pg_restore, most migrations).
    c.batch_execute(
        "CREATE TABLE k(a int, b text, c int);
         INSERT INTO k SELECT i, 'b' || i, i % 3 FROM generate_series(1, 50) i",
    )
    .unwrap();
    sync(&mut c);
    assert!(turso_key(&sqld, "k").is_empty());
    c.batch_execute("ALTER TABLE k ADD PRIMARY KEY (a); UPDATE k SET b = 'x' WHERE a = 1")
        .unwrap();
    sync(&mut c);
    assert_eq!(turso_key(&sqld, "k"), ["a"]);
    // Another primary key, over two columns; changes by the new key.
    c.batch_execute(
        "ALTER TABLE k DROP CONSTRAINT k_pkey, ADD PRIMARY KEY (c, a);
         UPDATE k SET c = 7 WHERE a = 2; DELETE FROM k WHERE a = 3",
    )
    .unwrap();
    sync(&mut c);
    assert_eq!(turso_key(&sqld, "k"), ["c", "a"]);
    // A unique index becomes the replica identity: UPDATE that changes it moves the row.
    c.batch_execute(
        "ALTER TABLE k ALTER b SET NOT NULL; CREATE UNIQUE INDEX k_b ON k (b);
         ALTER TABLE k REPLICA IDENTITY USING INDEX k_b;
         UPDATE k SET b = 'moved' WHERE a = 4; DELETE FROM k WHERE b = 'b5'",
    )
    .unwrap();
    sync(&mut c);
    assert_eq!(turso_unique(&sqld, "k"), ["b"]);
    // Back to the primary key, then no key at all with REPLICA IDENTITY FULL.
    c.batch_execute("ALTER TABLE k REPLICA IDENTITY DEFAULT; UPDATE k SET b = 'again' WHERE a = 6")
        .unwrap();
    sync(&mut c);
    assert_eq!(turso_key(&sqld, "k"), ["c", "a"]);
    c.batch_execute(
        "ALTER TABLE k REPLICA IDENTITY FULL; ALTER TABLE k DROP CONSTRAINT k_pkey;
         UPDATE k SET b = 'full' WHERE a = 7; DELETE FROM k WHERE a = 8",
    )
    .unwrap();
    sync(&mut c);
    assert!(turso_key(&sqld, "k").is_empty());
    // A key change and a rename in one transaction, with rows before and after it.
    c.batch_execute(
        "BEGIN; INSERT INTO k VALUES (100, 'hundred', 1);
         ALTER TABLE k ADD PRIMARY KEY (a); ALTER TABLE k RENAME COLUMN b TO bb;
         UPDATE k SET bb = 'after' WHERE a = 100; COMMIT",
    )
    .unwrap();
    sync(&mut c);
    assert_eq!(turso_key(&sqld, "k"), ["a"]);
    // No rebuild table is left behind.
    assert!(!sqld.table_exists("_pgturso_rebuild"));
}

#[test]
fn type_changes_carry_every_row_in_the_new_representation() {
    let sqld = Sqld::start("schema_types", false);
    let (mut c, slot) = setup_slot("schema_types");
    let url = sqld.url();
    let sync = |c: &mut postgres::Client, table: &str| {
        get_changes(c, &slot, &[("url", url.as_str())]).unwrap();
        assert_same_table(c, &sqld, table, table);
    };
    c.batch_execute(
        "CREATE TABLE ty(id int PRIMARY KEY, n int, t text, v varchar(10), f text);
         INSERT INTO ty SELECT i, i * 10, (i * 1.5)::text || '0', 'v' || i, repeat('x', i)
           FROM generate_series(1, 40) i;
         INSERT INTO ty VALUES (41, NULL, NULL, NULL, NULL), (42, -5, '2e3', '', '')",
    )
    .unwrap();
    sync(&mut c, "ty");
    // Each of these rewrites the table in PostgreSQL (except varchar to text); the Turso rows
    // must hold what PostgreSQL now holds, old rows included.
    for (alter, col, class) in [
        ("ALTER TABLE ty ALTER n TYPE bigint", "n", "integer"),
        (
            "ALTER TABLE ty ALTER t TYPE numeric USING t::numeric",
            "t",
            "text",
        ),
        ("ALTER TABLE ty ALTER v TYPE text", "v", "text"),
        ("ALTER TABLE ty ALTER n TYPE text", "n", "text"),
        (
            "ALTER TABLE ty ALTER f TYPE int USING length(f)",
            "f",
            "integer",
        ),
        (
            "ALTER TABLE ty ALTER n TYPE float8 USING n::float8 / 4 + 0.1",
            "n",
            "real",
        ),
        ("ALTER TABLE ty ALTER id TYPE bigint", "id", "integer"),
        (
            "ALTER TABLE ty ADD COLUMN r float8 DEFAULT random()",
            "r",
            "real",
        ),
        (
            "ALTER TABLE ty ADD COLUMN u text DEFAULT gen_random_uuid()",
            "u",
            "text",
        ),
    ] {
        c.batch_execute(alter).unwrap();
        sync(&mut c, "ty");
        let classes = storage(&sqld, "ty", col);
        assert!(
            !classes.is_empty() && classes.iter().all(|c| c == class),
            "{alter}: {col} stored as {classes:?}"
        );
    }
    // PostgreSQL's own representation, not a cast in SQLite: 2e3 as numeric is 2000.
    assert_eq!(
        sqld.query_text("SELECT t FROM ty WHERE id = 42"),
        pg_rows(&mut c, "SELECT t FROM ty WHERE id = 42")
    );
    assert_eq!(
        pg_rows(&mut c, "SELECT t FROM ty WHERE id = 42")[0][0].as_deref(),
        Some("2000")
    );
    // A rewrite between other changes of one transaction, and two rewrites in one.
    c.batch_execute(
        "BEGIN; INSERT INTO ty (id, n) VALUES (43, 1.25); UPDATE ty SET f = 99 WHERE id = 1;
         ALTER TABLE ty ALTER f TYPE text; UPDATE ty SET f = 'after' WHERE id = 2;
         ALTER TABLE ty ALTER f TYPE varchar(20); DELETE FROM ty WHERE id = 3;
         INSERT INTO ty (id, f) VALUES (44, 'new'); COMMIT",
    )
    .unwrap();
    sync(&mut c, "ty");
    assert!(storage(&sqld, "ty", "f").iter().all(|c| c == "text"));
    // TOASTed values travel through a rewrite whole (PostgreSQL re-toasts them into the new heap).
    c.batch_execute(
        "CREATE TABLE toasty(id int PRIMARY KEY, n int, doc text);
         ALTER TABLE toasty ALTER doc SET STORAGE EXTERNAL;
         INSERT INTO toasty SELECT i, i, repeat(md5(i::text), 400) FROM generate_series(1, 20) i",
    )
    .unwrap();
    sync(&mut c, "toasty");
    c.batch_execute("ALTER TABLE toasty ALTER n TYPE text USING (n * 3)::text")
        .unwrap();
    sync(&mut c, "toasty");
    assert_eq!(
        sqld.query_text("SELECT sum(length(doc)) FROM toasty"),
        [[Some("256000".to_string())]]
    );
    // A large rewrite streamed by PostgreSQL (decoded in pieces, spooled, applied at commit).
    c.batch_execute(
        "CREATE TABLE big(id int PRIMARY KEY, x int, pad text);
         INSERT INTO big SELECT i, i, repeat('p', 50) FROM generate_series(1, 20000) i",
    )
    .unwrap();
    sync(&mut c, "big");
    c.batch_execute("ALTER TABLE big ALTER x TYPE text USING (x * 2)::text")
        .unwrap();
    get_changes(
        &mut c,
        &slot,
        &[("url", url.as_str()), ("decoding_work_mem", "64kB")],
    )
    .unwrap();
    assert_same_table(&mut c, &sqld, "big", "big");
    assert_eq!(storage(&sqld, "big", "x").len(), 20000);
    // VACUUM FULL and CLUSTER rewrite the table too, with the same rows: nothing travels.
    c.batch_execute("VACUUM FULL big").unwrap();
    c.batch_execute("CLUSTER big USING big_pkey").unwrap();
    let out = get_changes(&mut c, &slot, &[("url", url.as_str())]).unwrap();
    assert!(out.is_empty(), "{out:?}");
    // An empty table has no rows to rewrite: the Turso column changes type all the same.
    c.batch_execute(
        "CREATE TABLE e(id int PRIMARY KEY, x int); INSERT INTO e VALUES (1, 1); DELETE FROM e",
    )
    .unwrap();
    sync(&mut c, "e");
    c.batch_execute("ALTER TABLE e ALTER x TYPE text; INSERT INTO e VALUES (2, '0042')")
        .unwrap();
    sync(&mut c, "e");
    assert_eq!(storage(&sqld, "e", "x"), ["text"]);
    assert!(!sqld.table_exists("_pgturso_rebuild"));
}

/// `sql` gives the same rows, as text, on PostgreSQL and on Turso; otherwise prints the first
/// difference.
fn same_aggregate(c: &mut postgres::Client, sqld: &Sqld, sql: &str) -> bool {
    let pg = pg_rows(c, sql);
    let turso = sqld.query_text(sql);
    if pg != turso {
        let at = pg.iter().zip(&turso).position(|(a, b)| a != b);
        eprintln!(
            "{sql}: {} rows in PostgreSQL, {} in Turso; first difference at {at:?}: {:?} / {:?}",
            pg.len(),
            turso.len(),
            at.and_then(|i| pg.get(i)),
            at.and_then(|i| turso.get(i)),
        );
    }
    pg == turso
}

/// pgbench's default initialisation loads the tables first and adds the primary keys afterwards;
/// a pgbench run then updates rows by those keys. Through pg_recvlogical, with no manual step,
/// Turso ends up an exact mirror.
#[test]
fn pgbench_init_and_run_replicate_through_pg_recvlogical() {
    let sqld = Sqld::start("schema_pgbench", false);
    let (mut c, slot) = setup_slot("schema_pgbench");
    let mut child =
        common::spawn_recvlogical("schema_pgbench", &slot, &[format!("url={}", sqld.url())]);
    let pgbench = |args: &[&str]| {
        let out = std::process::Command::new(common::pg_bindir().join("pgbench"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &common::pg().port.to_string(),
                "-U",
                "postgres",
            ])
            .args(args)
            .arg("schema_pgbench")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pgbench {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    pgbench(&["-i", "-s", "10", "-q"]);
    pgbench(&["-c", "2", "-t", "500", "-n"]);
    // Everything has arrived once the last history row has.
    let history = pg_rows(&mut c, "SELECT count(*) FROM pgbench_history")[0][0].clone();
    assert_eq!(history.as_deref(), Some("1000"));
    common::wait_until(
        "pgbench's history in Turso",
        std::time::Duration::from_secs(600),
        || {
            sqld.table_exists("pgbench_history")
                && sqld.query_text("SELECT count(*) FROM pgbench_history")[0][0] == history
        },
    );
    let _ = child.kill();
    let _ = child.wait();
    for (table, key) in [
        ("pgbench_branches", "bid"),
        ("pgbench_tellers", "tid"),
        ("pgbench_accounts", "aid"),
    ] {
        assert_eq!(turso_key(&sqld, table), [key], "{table}");
    }
    assert_same_table(&mut c, &sqld, "pgbench_branches", "pgbench_branches");
    assert_same_table(&mut c, &sqld, "pgbench_tellers", "pgbench_tellers");
    assert!(same_aggregate(
        &mut c,
        &sqld,
        "SELECT tid, bid, aid, delta, mtime FROM pgbench_history ORDER BY 1, 2, 3, 4, 5"
    ));
    // A million accounts: every updated one compared whole, all of them in aggregate.
    assert!(same_aggregate(
        &mut c,
        &sqld,
        "SELECT aid, bid, abalance, filler FROM pgbench_accounts WHERE abalance <> 0 ORDER BY aid"
    ));
    assert!(same_aggregate(
        &mut c,
        &sqld,
        "SELECT count(*), sum(aid), sum(bid), sum(abalance) FROM pgbench_accounts"
    ));
}

#[test]
fn tables_that_go_and_come() {
    let sqld = Sqld::start("schema_tables", false);
    let (mut c, slot) = setup_slot("schema_tables");
    let url = sqld.url();
    let sync = |c: &mut postgres::Client| {
        get_changes(c, &slot, &[("url", url.as_str())]).unwrap();
    };
    c.batch_execute(
        "CREATE TABLE t(id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'old'), (2, 'old');
         CREATE TABLE a(id int PRIMARY KEY, v text); INSERT INTO a VALUES (1, 'a');
         CREATE TABLE mv(id int PRIMARY KEY); INSERT INTO mv VALUES (1);
         CREATE TABLE gone(id int PRIMARY KEY); INSERT INTO gone VALUES (1)",
    )
    .unwrap();
    sync(&mut c);
    // Dropped and created again under the same name with another shape: the new table replaces
    // the Turso table (its rows are all that PostgreSQL has now).
    c.batch_execute(
        "DROP TABLE t; CREATE TABLE t(k text PRIMARY KEY, n int, extra float8);
         INSERT INTO t VALUES ('x', 1, 0.5), ('y', 2, NULL)",
    )
    .unwrap();
    sync(&mut c);
    assert_same_table(&mut c, &sqld, "t", "t");
    assert_eq!(turso_key(&sqld, "t"), ["k"]);
    // Renamed away, then a new table takes the name before the old one changes again: the old
    // one's Turso table follows its rename, the new one gets the name.
    c.batch_execute(
        "ALTER TABLE a RENAME TO a_old; CREATE TABLE a(id int PRIMARY KEY, w int);
         INSERT INTO a VALUES (7, 7); INSERT INTO a_old VALUES (2, 'a2')",
    )
    .unwrap();
    sync(&mut c);
    assert_same_table(&mut c, &sqld, "a", "a");
    assert_same_table(&mut c, &sqld, "a_old", "a_old");
    // SET SCHEMA: the Turso table is renamed to "schema.table".
    c.batch_execute("CREATE SCHEMA s; ALTER TABLE mv SET SCHEMA s; INSERT INTO s.mv VALUES (2)")
        .unwrap();
    sync(&mut c);
    assert!(!sqld.table_exists("mv"));
    assert_same_table(&mut c, &sqld, "s.mv", "s.mv");
    // TRUNCATE … CASCADE empties the referencing table too; truncating a partitioned table
    // empties its partitions (each partition is its own Turso table).
    c.batch_execute(
        "CREATE TABLE parent(id int PRIMARY KEY); CREATE TABLE child(id int PRIMARY KEY, p int REFERENCES parent);
         INSERT INTO parent VALUES (1), (2); INSERT INTO child VALUES (10, 1), (20, 2);
         CREATE TABLE m(id int, at date, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
         CREATE TABLE m_2025 PARTITION OF m FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
         CREATE TABLE m_2026 PARTITION OF m FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
         INSERT INTO m VALUES (1, '2025-05-05'), (2, '2026-06-06')",
    )
    .unwrap();
    sync(&mut c);
    let count = |table: &str| sqld.query_text(&format!("SELECT count(*) FROM \"{table}\""));
    for (table, n) in [
        ("parent", "2"),
        ("child", "2"),
        ("m_2025", "1"),
        ("m_2026", "1"),
    ] {
        assert_eq!(count(table), [[Some(n.to_string())]], "{table}");
    }
    c.batch_execute("TRUNCATE parent CASCADE; TRUNCATE m")
        .unwrap();
    sync(&mut c);
    for table in ["parent", "child", "m_2025", "m_2026"] {
        assert_eq!(count(table), [[Some("0".to_string())]], "{table}");
    }
    // DROP TABLE leaves the Turso table as it was (logical decoding carries no DDL).
    c.batch_execute("DROP TABLE gone; INSERT INTO s.mv VALUES (3)")
        .unwrap();
    sync(&mut c);
    assert_eq!(count("gone"), [[Some("1".to_string())]]);
    assert!(!sqld.table_exists("_pgturso_rebuild"));
}

/// UPDATE and DELETE of a table without key (REPLICA IDENTITY FULL) find the Turso row through
/// an index over all columns, not by scanning the table; duplicates and NULLs come out right.
#[test]
fn keyless_tables_find_rows_through_an_identity_index() {
    let sqld = Sqld::start("schema_keyless", false);
    let (mut c, slot) = setup_slot("schema_keyless");
    let url = sqld.url();
    // Rows as a multiset (ties in any order), in SQL both sides run alike (c is a multiple of
    // 0.25, NULLs sorted last on both).
    let sync = |c: &mut postgres::Client, third: &str| {
        get_changes(c, &slot, &[("url", url.as_str())]).unwrap();
        let sql = format!(
            "SELECT a, b, {third} FROM kl ORDER BY a, b IS NULL, b, {third} IS NULL, {third}"
        );
        assert!(same_aggregate(c, &sqld, &sql), "kl differs from PostgreSQL");
    };
    // Loaded with the default identity (inserts only), then made FULL: the next change
    // rebuilds the Turso table with the index.
    c.batch_execute(
        "CREATE TABLE kl(a int, b text, c float8);
         INSERT INTO kl SELECT i % 5000, CASE WHEN i % 7 = 0 THEN NULL ELSE 'b' || (i % 50) END, i / 4.0
           FROM generate_series(1, 20000) i;
         INSERT INTO kl SELECT 1, 'dup', 0.5 FROM generate_series(1, 3)",
    )
    .unwrap();
    sync(&mut c, "CAST(c * 4 AS INTEGER)");
    c.batch_execute(
        "ALTER TABLE kl REPLICA IDENTITY FULL;
         DELETE FROM kl WHERE a < 500;
         UPDATE kl SET b = 'updated' WHERE a BETWEEN 1000 AND 1400;
         UPDATE kl SET c = NULL WHERE b IS NULL AND a > 4000;
         DELETE FROM kl WHERE ctid = (SELECT min(ctid) FROM kl WHERE b = 'dup')",
    )
    .unwrap();
    sync(&mut c, "CAST(c * 4 AS INTEGER)");
    let plan = sqld.query_text(
        "EXPLAIN QUERY PLAN SELECT rowid FROM kl WHERE a IS 1 AND b IS 'x' AND c IS 0.5 LIMIT 1",
    );
    assert!(
        plan.iter().any(|r| r
            .iter()
            .flatten()
            .any(|d| d.contains("INDEX _pgturso_identity_kl"))),
        "{plan:?}"
    );
    // A column dropped and one added: rebuilt again, index included.
    c.batch_execute(
        "ALTER TABLE kl DROP COLUMN c, ADD COLUMN d int; DELETE FROM kl WHERE a = 4999",
    )
    .unwrap();
    sync(&mut c, "d");
    let index = sqld
        .query_text("SELECT name FROM pragma_index_info('_pgturso_identity_kl') ORDER BY seqno");
    assert_eq!(
        index,
        [
            [Some("a".to_string())],
            [Some("b".to_string())],
            [Some("d".to_string())]
        ]
    );
}

/// DROP TABLE keeps the Turso table by default; with option drop_tables (and the extension in
/// the database, whose event trigger announces drops in the WAL) it is dropped too, also through
/// DROP SCHEMA … CASCADE and when a role without any pgturso right drops its own table.
#[test]
fn drop_tables_drops_the_turso_table_in_the_same_transaction() {
    let sqld = Sqld::start("schema_drops", false);
    let (mut c, slot) = setup_slot("schema_drops");
    c.batch_execute(
        "CREATE EXTENSION pgturso;
         CREATE TABLE kept(id int PRIMARY KEY); CREATE TABLE gone(id int PRIMARY KEY);
         CREATE SCHEMA s; CREATE TABLE s.inner_t(id int PRIMARY KEY);
         DO $$ BEGIN CREATE ROLE schema_dropper LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
         CREATE TABLE owned(id int PRIMARY KEY);
         ALTER TABLE owned OWNER TO schema_dropper;
         INSERT INTO kept VALUES (1); INSERT INTO gone VALUES (1); INSERT INTO s.inner_t VALUES (1);
         INSERT INTO owned VALUES (1)",
    )
    .unwrap();
    let url = sqld.url();
    let sync = |c: &mut postgres::Client, drop: bool| {
        let mut opts = vec![("url", url.as_str())];
        if drop {
            opts.push(("drop_tables", "on"));
        }
        get_changes(c, &slot, &opts).unwrap()
    };
    sync(&mut c, true);
    for t in ["kept", "gone", "s.inner_t", "owned"] {
        assert!(sqld.table_exists(t), "{t}");
    }
    // Without the option the Turso table stays.
    c.batch_execute("DROP TABLE kept").unwrap();
    sync(&mut c, false);
    assert!(sqld.table_exists("kept"));
    // With it, dropped in the Turso transaction of the DROP, with its bookkeeping row.
    c.batch_execute("INSERT INTO gone VALUES (2); DROP TABLE gone")
        .unwrap();
    let out = sync(&mut c, true);
    assert_eq!(out.len(), 1, "{out:?}");
    assert!(!sqld.table_exists("gone"));
    assert_eq!(
        sqld.query_text("SELECT count(*) FROM _pgturso_schema WHERE turso_name = 'gone'"),
        [[Some("0".to_string())]]
    );
    c.batch_execute("DROP SCHEMA s CASCADE").unwrap();
    sync(&mut c, true);
    assert!(!sqld.table_exists("s.inner_t"));
    let mut d = postgres::Client::connect(
        &format!(
            "host=127.0.0.1 port={} user=schema_dropper dbname=schema_drops",
            common::pg().port
        ),
        postgres::NoTls,
    )
    .unwrap();
    d.batch_execute("DROP TABLE owned").unwrap();
    sync(&mut c, true);
    assert!(!sqld.table_exists("owned"));
    // A table created again under a dropped one's name starts afresh.
    c.batch_execute(
        "CREATE TABLE gone(id int PRIMARY KEY, v text); INSERT INTO gone VALUES (3, 'new')",
    )
    .unwrap();
    sync(&mut c, true);
    assert_same_table(&mut c, &sqld, "gone", "gone");
}
