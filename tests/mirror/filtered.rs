//! Mirror test: a publication with a partitioned table (replicated through its root, with a
//! column list and a row filter on its key) and a REPLICA IDENTITY FULL table with a row filter on
//! a non-key column, in a database of their own, decoded with `publication_names` into a Turso
//! database of their own. Each round writes random transactions (rows moving between partitions
//! and in and out of the filters, key changes, TOASTed values left unchanged, truncates, rolled
//! back transactions and savepoints, partitions created later), decodes them with random request
//! limits, and compares each Turso table with `SELECT <column list> FROM t WHERE <filter>`.

use super::*;

/// ids of both tables are in 1..=FILTERED_KEYS.
const FILTERED_KEYS: i64 = 300;
/// Partitions (regions) the partitioned table starts with, and how many it may get.
const FIRST_REGIONS: i64 = 3;
const MAX_REGIONS: i64 = 6;
/// The publication's row filter of `m_part`, on its key (what UPDATE and DELETE may filter on
/// with the default replica identity), and its column list (without `secret`).
const PART_FILTER: &str = "(id + region) % 4 <> 0";
const PART_COLUMNS: &str = "id, region, status, note, amount";
/// The row filter of `m_flt` (REPLICA IDENTITY FULL, so any column may be filtered on).
const FLT_FILTER: &str = "status <> 'draft'";
const FLT_COLUMNS: &str = "id, status, v, note";
const STATUSES: &[&str] = &["'draft'", "'open'", "'done'", "NULL"];

pub(super) struct Filtered {
    c: postgres::Client,
    pub(super) sqld: Sqld,
    regions: i64,
    pub(super) statements: u64,
}

impl Filtered {
    pub(super) fn start(log: &mut Log) -> Filtered {
        let sqld = Sqld::start("mirror_pub", false);
        let c = pg().fresh_db("mirror_pub");
        let mut f = Filtered {
            c,
            sqld,
            regions: FIRST_REGIONS,
            statements: 0,
        };
        // Partition 1 has its columns in another order, partition 2 a dropped column: rows are
        // converted to the root's row type by name.
        f.batch(
            log,
            &format!(
                "SELECT pg_create_logical_replication_slot('slot_mirror_pub', 'pgturso');
                 CREATE TABLE m_part (id int, region int, status text, secret text, note text,
                     amount bigint, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
                 CREATE TABLE m_part_0 PARTITION OF m_part FOR VALUES IN (0);
                 CREATE TABLE m_part_1 (note text, amount bigint, secret text, status text,
                     region int NOT NULL, id int NOT NULL, PRIMARY KEY (id, region));
                 ALTER TABLE m_part ATTACH PARTITION m_part_1 FOR VALUES IN (1);
                 CREATE TABLE m_part_2 (id int NOT NULL, junk int, region int NOT NULL, status text,
                     secret text, note text, amount bigint, PRIMARY KEY (id, region));
                 ALTER TABLE m_part_2 DROP COLUMN junk;
                 ALTER TABLE m_part ATTACH PARTITION m_part_2 FOR VALUES IN (2);
                 CREATE TABLE m_flt (id int PRIMARY KEY, status text, v bigint, note text);
                 ALTER TABLE m_flt ALTER COLUMN note SET STORAGE EXTERNAL;
                 ALTER TABLE m_flt REPLICA IDENTITY FULL;
                 CREATE PUBLICATION m_pub FOR TABLE m_part ({PART_COLUMNS}) WHERE ({PART_FILTER}),
                     m_flt WHERE ({FLT_FILTER}) WITH (publish_via_partition_root = true)"
            ),
        );
        f
    }

    fn batch(&mut self, log: &mut Log, sql: &str) {
        log.line(sql);
        self.c
            .batch_execute(sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    fn exec(&mut self, log: &mut Log, sql: &str) {
        self.statements += 1;
        self.batch(log, sql);
    }

    /// Writes `n` random transactions.
    pub(super) fn write(&mut self, rng: &mut Rng, log: &mut Log, n: u64) {
        if self.regions < MAX_REGIONS && rng.chance(0.2) {
            let r = self.regions;
            self.exec(
                log,
                &format!("CREATE TABLE m_part_{r} PARTITION OF m_part FOR VALUES IN ({r})"),
            );
            self.regions += 1;
        }
        for _ in 0..n {
            self.batch(log, "BEGIN");
            for _ in 0..rng.range(1, 4) {
                let savepoint = rng.chance(0.1);
                if savepoint {
                    self.batch(log, "SAVEPOINT s");
                }
                let sql = self.statement(rng);
                self.exec(log, &sql);
                if savepoint && rng.chance(0.5) {
                    self.batch(log, "ROLLBACK TO SAVEPOINT s");
                }
            }
            let end = if rng.chance(0.15) {
                "ROLLBACK"
            } else {
                "COMMIT"
            };
            self.batch(log, end);
        }
    }

    /// One random statement; none of them can fail.
    fn statement(&mut self, rng: &mut Rng) -> String {
        let id = rng.range(1, FILTERED_KEYS);
        let id2 = rng.range(1, FILTERED_KEYS);
        let region = rng.range(0, self.regions - 1);
        let region2 = rng.range(0, self.regions - 1);
        let status = *rng.pick(STATUSES);
        let text = lit(&rand_text(rng, 12));
        match rng.weighted(&[8, 4, 4, 3, 2, 1, 6, 4, 3, 2, 2, 1]) {
            0 => {
                // Distinct keys: ON CONFLICT DO UPDATE may touch a row once per statement.
                let mut keys: Vec<(i64, i64)> = (0..rng.range(1, 6))
                    .map(|_| (rng.range(1, FILTERED_KEYS), rng.range(0, self.regions - 1)))
                    .collect();
                keys.sort_unstable();
                keys.dedup();
                let rows: Vec<String> = keys
                    .iter()
                    .map(|(i, r)| {
                        format!(
                            "({i}, {r}, {}, {}, {}, {})",
                            rng.pick(STATUSES),
                            lit(&rand_text(rng, 8)),
                            lit(&rand_text(rng, 12)),
                            rng.range(-1000, 1000)
                        )
                    })
                    .collect();
                format!(
                    "INSERT INTO m_part (id, region, status, secret, note, amount) VALUES {}
                     ON CONFLICT (id, region) DO UPDATE SET status = EXCLUDED.status,
                     amount = m_part.amount + EXCLUDED.amount",
                    rows.join(", ")
                )
            }
            1 => format!(
                "UPDATE m_part SET status = {status}, note = {text}, amount = amount + 1
                 WHERE id BETWEEN {id} AND {}",
                id + 10
            ),
            // To another partition, and maybe into or out of the filter.
            2 => format!(
                "UPDATE m_part SET region = {region2} WHERE id = {id} AND region = {region}
                 AND NOT EXISTS (SELECT FROM m_part WHERE id = {id} AND region = {region2})"
            ),
            3 => format!(
                "UPDATE m_part SET id = {id2} WHERE id = {id} AND region = {region}
                 AND NOT EXISTS (SELECT FROM m_part WHERE id = {id2} AND region = {region})"
            ),
            4 => format!(
                "DELETE FROM m_part WHERE id % {} = {}",
                rng.range(5, 20),
                rng.range(0, 4)
            ),
            5 if rng.chance(0.2) => "TRUNCATE m_part".into(),
            // m_flt: a TOASTed note now and then, left unchanged by most updates.
            6 => {
                let note = if rng.chance(0.3) {
                    format!("repeat({}, {})", text, rng.range(500, 1500))
                } else {
                    text
                };
                format!(
                    "INSERT INTO m_flt VALUES ({id}, {status}, {}, {note})
                     ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, v = EXCLUDED.v",
                    rng.range(-1000, 1000)
                )
            }
            7 => format!(
                "UPDATE m_flt SET status = {status} WHERE id BETWEEN {id} AND {}",
                id + 15
            ),
            8 => format!("UPDATE m_flt SET v = v + 1 WHERE id % 7 = {}", id % 7),
            9 => format!(
                "UPDATE m_flt SET id = {id2}, status = {status} WHERE id = {id}
                 AND NOT EXISTS (SELECT FROM m_flt WHERE id = {id2})"
            ),
            10 => format!(
                "DELETE FROM m_flt WHERE id % {} = {}",
                rng.range(5, 20),
                rng.range(0, 4)
            ),
            11 if rng.chance(0.2) => "TRUNCATE m_flt".into(),
            _ => format!("UPDATE m_flt SET note = {text} WHERE id = {id}"),
        }
    }

    /// Decodes everything pending through the publication.
    pub(super) fn sync(&mut self, rng: &mut Rng, log: &mut Log) -> Result<(u64, u64), String> {
        let url = self.sqld.url();
        sync(
            &mut self.c,
            rng,
            log,
            "slot_mirror_pub",
            &url,
            &[("publication_names", "m_pub")],
        )
    }

    /// Compares both Turso tables with what the publication selects; returns rows compared.
    pub(super) fn compare(&mut self, mm: &mut Mismatches) -> u64 {
        let mut compared = 0;
        for (table, columns, filter) in [
            ("m_part", PART_COLUMNS, PART_FILTER),
            ("m_flt", FLT_COLUMNS, FLT_FILTER),
        ] {
            let want = pg_rows(
                &mut self.c,
                &format!("SELECT {columns} FROM {table} WHERE {filter} ORDER BY 1, 2"),
            );
            if !self.sqld.table_exists(table) {
                if !want.is_empty() {
                    mm.add(format!(
                        "{table}: no Turso table, {} rows wanted",
                        want.len()
                    ));
                }
                continue;
            }
            let turso_columns: Vec<String> = self
                .sqld
                .query_text(&format!(
                    "SELECT name FROM pragma_table_info('{table}') ORDER BY cid"
                ))
                .into_iter()
                .map(|r| r[0].clone().unwrap_or_default())
                .collect();
            if turso_columns.join(", ") != columns {
                mm.add(format!(
                    "{table}: Turso has columns {turso_columns:?}, not {columns}"
                ));
            }
            let got = self
                .sqld
                .query_text(&format!("SELECT {columns} FROM \"{table}\" ORDER BY 1, 2"));
            compared += want.len() as u64;
            if got != want {
                let extra = got.iter().find(|r| !want.contains(r));
                let missing = want.iter().find(|r| !got.contains(r));
                mm.add(format!(
                    "{table}: Turso has {} rows, the publication selects {} (first extra {extra:?}, first missing {missing:?})",
                    got.len(),
                    want.len()
                ));
            }
        }
        compared
    }
}
