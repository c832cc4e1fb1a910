//! Partitioned tables (issue 17): through a publication with `publish_via_partition_root`, and
//! with `table_name` naming the partitioned table (the SQL API), every partition's changes go to
//! one Turso table named after the root; otherwise each partition is a Turso table of its own.
//! Partitions attached, detached and created later, rows moving between partitions, partitions
//! whose columns are ordered differently, and TRUNCATE of the root.

mod common;

use common::{get_changes, pg_rows, setup_slot, Sqld};

/// The Turso table `table` holds what PostgreSQL's `query` returns (id, at, v), ordered by id.
fn same_rows(c: &mut postgres::Client, sqld: &Sqld, table: &str, query: &str) {
    let turso = sqld.query_text(&format!("SELECT id, at, v FROM \"{table}\" ORDER BY id"));
    let pg = pg_rows(c, &format!("SELECT id, at, v FROM ({query}) q ORDER BY id"));
    assert_eq!(turso, pg, "{table}");
}

/// ev, partitioned by year; `publication` is created before the first rows (decoding reads a
/// publication as of each change).
fn partitioned(c: &mut postgres::Client, publication: &str) {
    c.batch_execute(
        "CREATE TABLE ev(id int, at date, v text, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
         CREATE TABLE ev_2025 PARTITION OF ev FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
         -- A partition whose columns are in another order (and numbered otherwise).
         CREATE TABLE ev_2026 (v text, dropme int, at date NOT NULL, id int NOT NULL);
         ALTER TABLE ev_2026 DROP COLUMN dropme;
         ALTER TABLE ev ATTACH PARTITION ev_2026 FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');",
    )
    .unwrap();
    c.batch_execute(publication).unwrap();
    c.batch_execute(
        "INSERT INTO ev SELECT i, DATE '2025-01-01' + i * 3, 'v' || i FROM generate_series(1, 200) i",
    )
    .unwrap();
}

/// Changes of every kind, a row moving between partitions, a partition created, one detached.
fn workload(c: &mut postgres::Client) {
    c.batch_execute(
        "UPDATE ev SET v = 'changed' WHERE id % 10 = 0;
         DELETE FROM ev WHERE id % 17 = 0;
         UPDATE ev SET at = at + 365 WHERE id BETWEEN 20 AND 30;
         CREATE TABLE ev_2027 PARTITION OF ev FOR VALUES FROM ('2027-01-01') TO ('2028-01-01');
         INSERT INTO ev VALUES (1000, '2027-06-01', 'new partition');
         UPDATE ev SET at = '2027-02-02' WHERE id = 1;",
    )
    .unwrap();
}

#[test]
fn through_the_partition_root_every_partition_goes_to_one_table() {
    let sqld = Sqld::start("parts_root", false);
    let (mut c, slot) = setup_slot("parts_root");
    partitioned(
        &mut c,
        "CREATE PUBLICATION p_root FOR TABLE ev WITH (publish_via_partition_root = true)",
    );
    let url = sqld.url();
    let sync = |c: &mut postgres::Client| {
        get_changes(
            c,
            &slot,
            &[("url", url.as_str()), ("publication_names", "p_root")],
        )
        .unwrap()
    };
    sync(&mut c);
    same_rows(&mut c, &sqld, "ev", "SELECT * FROM ev");
    for leaf in ["ev_2025", "ev_2026"] {
        assert!(!sqld.table_exists(leaf), "{leaf}");
    }
    workload(&mut c);
    sync(&mut c);
    same_rows(&mut c, &sqld, "ev", "SELECT * FROM ev");
    assert!(!sqld.table_exists("ev_2027"));
    // A detached partition leaves the publication: its later changes stay out of Turso.
    c.batch_execute(
        "ALTER TABLE ev DETACH PARTITION ev_2027; INSERT INTO ev_2027 VALUES (2000, '2027-03-03', 'detached')",
    )
    .unwrap();
    sync(&mut c);
    assert_eq!(
        sqld.query_text("SELECT count(*) FROM ev WHERE id = 2000"),
        [[Some("0".to_string())]]
    );
    // TRUNCATE of the root empties the Turso table.
    c.batch_execute("TRUNCATE ev").unwrap();
    sync(&mut c);
    assert_eq!(
        sqld.query_text("SELECT count(*) FROM ev"),
        [[Some("0".to_string())]]
    );
}

#[test]
fn table_name_of_a_partitioned_table_takes_its_partitions() {
    let sqld = Sqld::start("parts_named", false);
    let (mut c, slot) = setup_slot("parts_named");
    partitioned(&mut c, "");
    let url = sqld.url();
    let sync = |c: &mut postgres::Client| {
        get_changes(c, &slot, &[("url", url.as_str()), ("table_name", "ev")]).unwrap()
    };
    sync(&mut c);
    same_rows(&mut c, &sqld, "ev", "SELECT * FROM ev");
    workload(&mut c);
    sync(&mut c);
    same_rows(&mut c, &sqld, "ev", "SELECT * FROM ev");
    for leaf in ["ev_2025", "ev_2026", "ev_2027"] {
        assert!(!sqld.table_exists(leaf), "{leaf}");
    }
}

#[test]
fn without_the_root_each_partition_is_its_own_table() {
    let sqld = Sqld::start("parts_leaves", false);
    let (mut c, slot) = setup_slot("parts_leaves");
    partitioned(&mut c, "CREATE PUBLICATION p_leaves FOR TABLE ev");
    let url = sqld.url();
    // Through the publication first, then with no filter at all.
    get_changes(
        &mut c,
        &slot,
        &[("url", url.as_str()), ("publication_names", "p_leaves")],
    )
    .unwrap();
    for leaf in ["ev_2025", "ev_2026"] {
        same_rows(&mut c, &sqld, leaf, &format!("SELECT * FROM {leaf}"));
    }
    // The partitioned table itself is no Turso table.
    assert!(!sqld.table_exists("ev"));
    workload(&mut c);
    get_changes(&mut c, &slot, &[("url", url.as_str())]).unwrap();
    for leaf in ["ev_2025", "ev_2026", "ev_2027"] {
        same_rows(&mut c, &sqld, leaf, &format!("SELECT * FROM {leaf}"));
    }
    c.batch_execute("TRUNCATE ev").unwrap();
    get_changes(&mut c, &slot, &[("url", url.as_str())]).unwrap();
    assert!(!sqld.table_exists("ev"));
    for leaf in ["ev_2025", "ev_2026", "ev_2027"] {
        assert_eq!(
            sqld.query_text(&format!("SELECT count(*) FROM {leaf}")),
            [[Some("0".to_string())]]
        );
    }
}

/// The worker (`turso_start`) with a publication through the partition root: the initial copy of
/// the partitioned table holds every partition's rows, later changes follow into the same table.
#[test]
fn the_worker_replicates_a_publication_through_the_partition_root() {
    let sqld = Sqld::start("parts_worker", false);
    let mut c = common::pg().fresh_db("parts_worker");
    c.batch_execute(&format!(
        "CREATE EXTENSION pgturso;
         CREATE FUNCTION turso_url() RETURNS text LANGUAGE sql AS $$ SELECT '{}' $$;
         CREATE FUNCTION turso_token() RETURNS text LANGUAGE sql AS $$ SELECT '' $$;",
        sqld.url()
    ))
    .unwrap();
    partitioned(
        &mut c,
        "CREATE PUBLICATION p_worker FOR TABLE ev WITH (publish_via_partition_root = true)",
    );
    common::one(&mut c, "SELECT turso_start('p_worker')");
    same_rows(&mut c, &sqld, "ev", "SELECT * FROM ev");
    workload(&mut c);
    common::wait_until(
        "the worker to replicate the partitions' changes",
        std::time::Duration::from_secs(90),
        || {
            sqld.query_text("SELECT count(*), sum(id) FROM ev")
                == pg_rows(&mut c, "SELECT count(*), sum(id) FROM ev")
        },
    );
    same_rows(&mut c, &sqld, "ev", "SELECT * FROM ev");
    assert!(!sqld.table_exists("ev_2027"));
    common::one(&mut c, "SELECT turso_stop('p_worker')");
}
