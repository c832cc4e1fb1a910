//! Tests of the replication core against a scripted in-memory transport.

use super::*;
use crate::model::{Cell, Column, SqlType};
use serde_json::{json, Value as Json};

/// Records every request and answers like sqld would when everything succeeds, except for
/// an optional failing step (by SQL prefix).
#[derive(Default)]
struct Fake {
    requests: Vec<(Option<String>, Json)>,
    progress: Option<i64>,
    fail_sql: Option<&'static str>,
    base_url: Option<String>,
    /// Batch requests to refuse (connection refused: not applied).
    refuse: usize,
    /// Batch requests to apply and then lose the response of.
    lose: usize,
    /// Batch requests to answer with this HTTP status instead of applying them.
    status: Option<(u16, usize)>,
    pauses: usize,
    /// Batches the progress guard refused.
    refused: usize,
    /// Batch requests to answer with SQLITE_BUSY at their first step.
    busy: usize,
    /// Answer the JSON rows probe with an error, like a server without `json_each`/`unhex`.
    no_json: bool,
    /// Progress to move to right after the progress row was read (another attempt landed).
    progress_after_read: Option<i64>,
    /// The xid the progress row names, if any.
    progress_xid: Option<i64>,
}

fn is_batch(body: &Json) -> bool {
    body["requests"][0]["type"] == "batch"
}

impl Transport for &mut Fake {
    fn pipeline(
        &mut self,
        base_url: Option<&str>,
        request: &PipelineRequest,
    ) -> Result<PipelineResponse, ClientError> {
        let body = serde_json::to_value(request).unwrap();
        self.requests
            .push((base_url.map(str::to_string), body.clone()));
        if is_batch(&body) && self.refuse > 0 {
            self.refuse -= 1;
            return Err(ClientError::Connect {
                url: "u".into(),
                detail: "refused".into(),
            });
        }
        if let Some((status, n)) = self.status.filter(|(_, n)| *n > 0) {
            if is_batch(&body) {
                self.status = Some((status, n - 1));
                return Err(ClientError::Http {
                    status,
                    body: String::new(),
                });
            }
        }
        let mut results = vec![];
        let mut closes = false;
        for r in body["requests"].as_array().unwrap() {
            match r["type"].as_str().unwrap() {
                "execute"
                    if self.no_json && r["stmt"]["sql"] == crate::turso::sql::JSON_ROWS_PROBE =>
                {
                    results.push(
                        json!({"type": "error", "error": {"message": "no such function: unhex"}}),
                    );
                }
                "execute" => {
                    let rows = match (
                        r["stmt"]["sql"].as_str().unwrap().starts_with("SELECT"),
                        self.progress,
                    ) {
                        (true, Some(p)) => {
                            let xid = match self.progress_xid {
                                Some(x) => json!({"type": "integer", "value": x.to_string()}),
                                None => json!({"type": "null"}),
                            };
                            json!([[{"type": "integer", "value": p.to_string()}, xid, {"type": "null"}]])
                        }
                        _ => json!([]),
                    };
                    if r["stmt"]["sql"].as_str().unwrap().starts_with("SELECT") {
                        if let Some(p) = self.progress_after_read.take() {
                            self.progress = Some(p);
                        }
                    }
                    results.push(json!({"type": "ok", "response": {"type": "execute", "result": {"cols": [], "rows": rows, "affected_row_count": 0}}}));
                }
                "batch" if self.busy > 0 => {
                    self.busy -= 1;
                    let n = r["batch"]["steps"].as_array().unwrap().len();
                    let mut errs = vec![Json::Null; n];
                    errs[0] = json!({"message": "SQLite error: database is locked", "code": "SQLITE_BUSY"});
                    results.push(json!({"type": "ok", "response": {"type": "batch", "result": {"step_results": vec![Json::Null; n], "step_errors": errs}}}));
                }
                "batch" => {
                    let mut res = vec![];
                    let mut errs = vec![];
                    let mut failed = false;
                    for step in r["batch"]["steps"].as_array().unwrap() {
                        let sql = step["stmt"]["sql"].as_str().unwrap();
                        let lsn_arg = || -> i64 {
                            let lsn = step["stmt"]["args"][2]["value"].as_str().unwrap();
                            lsn.parse().unwrap()
                        };
                        // The progress guard fails when the progress row has reached its LSN.
                        if sql.starts_with("UPDATE \"_pgturso_progress\"")
                            && !failed
                            && self.progress.is_some_and(|p| p >= lsn_arg())
                        {
                            failed = true;
                            self.refused += 1;
                            res.push(Json::Null);
                            errs.push(json!({"message": "SQLite error: NOT NULL constraint failed: _pgturso_progress.lsn", "code": "SQLITE_CONSTRAINT_NOTNULL"}));
                            continue;
                        }
                        if sql.starts_with("INSERT INTO \"_pgturso_progress\"") && !failed {
                            // Forward only, like the real upsert.
                            self.progress = Some(self.progress.unwrap_or(0).max(lsn_arg()));
                        }
                        let is_rollback = sql == "ROLLBACK";
                        if failed && !is_rollback {
                            res.push(Json::Null);
                            errs.push(Json::Null);
                        } else if !failed && self.fail_sql.is_some_and(|f| sql.starts_with(f)) {
                            failed = true;
                            res.push(Json::Null);
                            errs.push(
                                json!({"message": "SQLite error: boom", "code": "SQLITE_ERROR"}),
                            );
                        } else if is_rollback && !failed {
                            res.push(Json::Null);
                            errs.push(Json::Null);
                        } else {
                            res.push(json!({"cols": [], "rows": [], "affected_row_count": 1}));
                            errs.push(Json::Null);
                        }
                    }
                    results.push(json!({"type": "ok", "response": {"type": "batch", "result": {"step_results": res, "step_errors": errs}}}));
                }
                "close" => {
                    closes = true;
                    results.push(json!({"type": "ok", "response": {"type": "close"}}));
                }
                other => panic!("unexpected request {other}"),
            }
        }
        if is_batch(&body) && self.lose > 0 {
            self.lose -= 1;
            return Err(ClientError::Network {
                url: "u".into(),
                detail: "connection reset".into(),
            });
        }
        let resp = json!({
            "baton": if closes { Json::Null } else { json!("baton-1") },
            "base_url": self.base_url,
            "results": results,
        });
        Ok(serde_json::from_value(resp).unwrap())
    }

    fn pause(&mut self, _duration: std::time::Duration) {
        self.pauses += 1;
    }
}

fn table() -> Table {
    Table {
        source: "1.1".into(),
        pg_schema: "public".into(),
        pg_name: "t".into(),
        turso_name: "t".into(),
        columns: vec![
            Column {
                name: "id".into(),
                sql_type: SqlType::Integer,
                not_null: true,
                attnum: 1,
                missing: None,
            },
            Column {
                name: "v".into(),
                sql_type: SqlType::Text,
                not_null: false,
                attnum: 2,
                missing: None,
            },
        ],
        key: vec![0],
        key_is_primary: true,
        identity_full: false,
        shape: Default::default(),
    }
}

fn insert(id: i64) -> RowChange {
    RowChange::Insert {
        new: vec![
            Cell::Value(Value::Integer(id)),
            Cell::Value(Value::Text(format!("v{id}"))),
        ],
    }
}

/// The transaction (batch) requests, in order, without the progress and schema reads.
fn txns(fake: &Fake) -> Vec<(Option<String>, Json)> {
    fake.requests
        .iter()
        .filter(|(_, b)| is_batch(b))
        .cloned()
        .collect()
}

/// Every step of a batch.
fn all_steps(req: &Json) -> Vec<Json> {
    req["requests"][0]["batch"]["steps"]
        .as_array()
        .unwrap()
        .to_vec()
}

/// The steps of a batch, schema bookkeeping and the progress guard left out (tests of the
/// guard read `all_steps`).
fn steps(req: &Json) -> Vec<Json> {
    all_steps(req)
        .into_iter()
        .filter(|s| {
            let sql = s["stmt"]["sql"].as_str().unwrap();
            !sql.contains("_pgturso_schema") && !sql.starts_with(GUARD_PREFIX)
        })
        .collect()
}

const GUARD_PREFIX: &str = "UPDATE \"_pgturso_progress\" SET \"lsn\" = NULL";

/// The steps of the first transaction that insert into table "t".
fn insert_steps(fake: &Fake) -> Vec<Json> {
    steps(&txns(fake)[0].1)
        .into_iter()
        .filter(|s| {
            s["stmt"]["sql"]
                .as_str()
                .unwrap()
                .starts_with("INSERT INTO \"t\"")
        })
        .collect()
}

/// Statements of a batch: first two words, schema bookkeeping left out.
fn step_sqls(req: &Json) -> Vec<String> {
    steps(req)
        .iter()
        .map(|s| {
            s["stmt"]["sql"]
                .as_str()
                .unwrap()
                .split(' ')
                .take(2)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

#[test]
fn one_transaction_is_one_atomic_request_with_progress() {
    let mut fake = Fake::default();
    let mut r = Replicator::new(&mut fake, "sys".into(), "slot".into(), Limits::default());
    r.begin(0x100, 1).unwrap();
    assert!(r.change(&table(), insert(1)).unwrap());
    assert!(r.change(&table(), insert(2)).unwrap());
    let out = r.commit().unwrap();
    assert_eq!(out.as_deref(), Some("COMMIT 0/100: 2 changes"));
    drop(r);
    assert_eq!(
        fake.requests.len(),
        3,
        "progress read + schema read + one transaction request"
    );
    let all = txns(&fake);
    let (_, txn) = &all[0];
    assert_eq!(txn["baton"], Json::Null);
    assert_eq!(
        step_sqls(txn),
        [
            "BEGIN",
            "CREATE TABLE",
            "INSERT INTO",
            "INSERT INTO",
            "COMMIT",
            "ROLLBACK"
        ]
    );
    let rows = &steps(txn)[2]["stmt"];
    assert!(
        rows["sql"].as_str().unwrap().contains("FROM json_each(?)"),
        "two rows, one statement: {rows}"
    );
    assert_eq!(rows["args"].as_array().unwrap().len(), 1);
    let json: Json = serde_json::from_str(rows["args"][0]["value"].as_str().unwrap()).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 2, "{json}");
    // A server that fails the probe gets placeholders.
    let mut fake = Fake {
        no_json: true,
        ..Default::default()
    };
    let mut r = Replicator::new(&mut fake, "sys".into(), "slot".into(), Limits::default());
    r.begin(0x100, 1).unwrap();
    r.change(&table(), insert(1)).unwrap();
    r.change(&table(), insert(2)).unwrap();
    r.commit().unwrap();
    drop(r);
    let rows = &steps(&txns(&fake)[0].1)[2]["stmt"];
    assert!(rows["sql"]
        .as_str()
        .unwrap()
        .contains("VALUES (?, ?), (?, ?)"));
    assert_eq!(rows["args"].as_array().unwrap().len(), 4);
    let progress = &steps(txn)[3]["stmt"];
    assert!(progress["sql"]
        .as_str()
        .unwrap()
        .contains("_pgturso_progress"));
    assert_eq!(
        progress["args"][2],
        json!({"type": "integer", "value": "256"})
    );
    assert_eq!(txn["requests"][1]["type"], "close");
}

#[test]
fn table_is_created_once_per_session() {
    let mut fake = Fake::default();
    let mut r = Replicator::new(&mut fake, "sys".into(), "slot".into(), Limits::default());
    for lsn in [0x100, 0x200] {
        r.begin(lsn, 1).unwrap();
        r.change(&table(), insert(lsn as i64)).unwrap();
        r.commit().unwrap();
    }
    drop(r);
    assert_eq!(
        step_sqls(&txns(&fake)[1].1),
        ["BEGIN", "INSERT INTO", "INSERT INTO", "COMMIT", "ROLLBACK"]
    );
}

#[test]
fn transactions_at_or_below_progress_are_skipped() {
    let mut fake = Fake {
        progress: Some(0x200),
        ..Default::default()
    };
    let mut r = Replicator::new(&mut fake, "sys".into(), "slot".into(), Limits::default());
    r.begin(0x200, 1).unwrap();
    assert!(!r.change(&table(), insert(1)).unwrap());
    assert_eq!(r.commit().unwrap(), None);
    r.begin(0x300, 1).unwrap();
    assert!(r.change(&table(), insert(2)).unwrap());
    assert!(r.commit().unwrap().is_some());
    drop(r);
    assert_eq!(
        fake.requests.len(),
        3,
        "one progress read, one schema read, then only the new transaction"
    );
}

#[test]
fn empty_transactions_send_nothing() {
    let mut fake = Fake::default();
    let mut r = Replicator::new(&mut fake, "sys".into(), "slot".into(), Limits::default());
    r.begin(0x100, 1).unwrap();
    assert_eq!(r.commit().unwrap(), None);
    drop(r);
    assert!(fake.requests.is_empty());
}

#[test]
fn large_transactions_span_requests_on_one_stream() {
    let mut fake = Fake {
        base_url: Some("http://other:1/".into()),
        ..Default::default()
    };
    let limits = Limits {
        max_records: 3,
        max_bytes: 1 << 20,
        ..Limits::default()
    };
    let mut r = Replicator::new(&mut fake, "sys".into(), "slot".into(), limits);
    r.begin(0x100, 1).unwrap();
    for id in 0..5 {
        r.change(&table(), insert(id)).unwrap();
    }
    r.commit().unwrap();
    drop(r);
    let txn = txns(&fake);
    assert_eq!(txn.len(), 3);
    assert_eq!(txn[0].1["baton"], Json::Null);
    assert_eq!(
        step_sqls(&txn[0].1),
        ["BEGIN", "CREATE TABLE", "INSERT INTO"]
    );
    assert_eq!(txn[1].1["baton"], "baton-1");
    assert_eq!(
        txn[1].0.as_deref(),
        Some("http://other:1/"),
        "follows base_url"
    );
    assert_eq!(
        step_sqls(&txn[1].1),
        ["INSERT INTO"],
        "two rows, one statement"
    );
    assert_eq!(
        step_sqls(&txn[2].1),
        ["INSERT INTO", "INSERT INTO", "COMMIT", "ROLLBACK"]
    );
    assert_eq!(txn[2].1["requests"][1]["type"], "close");
}

#[test]
fn a_failed_step_is_an_error_naming_lsn_and_statement() {
    let mut fake = Fake {
        fail_sql: Some("INSERT INTO \"t\""),
        ..Default::default()
    };
    let mut r = Replicator::new(&mut fake, "sys".into(), "slot".into(), Limits::default());
    r.begin(0x16B3748, 1).unwrap();
    r.change(&table(), insert(1)).unwrap();
    let err = r.commit().unwrap_err().to_string();
    assert!(err.contains("0/16B3748"), "{err}");
    assert!(err.contains("SQLite error: boom"), "{err}");
    assert!(err.contains("INSERT INTO \"t\""), "{err}");
}

#[test]
fn a_failed_transaction_does_not_mark_its_table_created() {
    let mut fake = Fake {
        fail_sql: Some("INSERT INTO \"t\""),
        ..Default::default()
    };
    let mut r = Replicator::new(&mut fake, "sys".into(), "slot".into(), Limits::default());
    r.begin(0x100, 1).unwrap();
    r.change(&table(), insert(1)).unwrap();
    assert!(r.commit().is_err());
    assert!(r.ensured.is_empty());
}

#[test]
fn changes_collapse_per_row_and_keep_their_order_around_other_statements() {
    let mut fake = Fake::default();
    let mut r = Replicator::new(&mut fake, "sys".into(), "slot".into(), Limits::default());
    let mut other = table();
    other.turso_name = "u".into();
    other.source = "1.2".into();
    let delete = |id| RowChange::Delete {
        old: Some(vec![
            Cell::Value(Value::Integer(id)),
            Cell::Value(Value::Null),
        ]),
    };
    r.begin(0x100, 1).unwrap();
    for change in [insert(1), insert(2), delete(1), delete(2), insert(1)] {
        r.change(&table(), change).unwrap();
    }
    r.change(&other, insert(9)).unwrap();
    r.change(&table(), insert(3)).unwrap();
    assert_eq!(
        r.commit().unwrap().as_deref(),
        Some("COMMIT 0/100: 7 changes")
    );
    drop(r);
    let steps = steps(&txns(&fake)[0].1);
    let sqls: Vec<&str> = steps
        .iter()
        .map(|s| s["stmt"]["sql"].as_str().unwrap())
        .collect();
    // Row 1 was inserted, deleted and inserted again: one upsert; row 2 inserted and deleted: one
    // delete. The CREATE TABLE of "u" applies after them, row 3 of "t" after it.
    let create_u = sqls
        .iter()
        .position(|s| s.starts_with("CREATE TABLE IF NOT EXISTS \"u\""))
        .unwrap();
    let t_before: Vec<&str> = sqls[..create_u]
        .iter()
        .copied()
        .filter(|s| s.contains("\"t\"") && !s.starts_with("CREATE"))
        .filter(|s| s.starts_with("INSERT") || s.starts_with("DELETE"))
        .collect();
    assert_eq!(t_before.len(), 2, "{sqls:#?}");
    assert!(t_before[0].starts_with("DELETE FROM \"t\""), "{sqls:#?}");
    assert!(t_before[1].starts_with("INSERT INTO \"t\""), "{sqls:#?}");
    let args = |i: usize| steps[i]["stmt"]["args"].to_string();
    let delete_at = sqls
        .iter()
        .position(|s| s.starts_with("DELETE FROM \"t\""))
        .unwrap();
    assert!(args(delete_at).contains("\"2\""), "{}", args(delete_at));
    let after: Vec<&str> = sqls[create_u..]
        .iter()
        .copied()
        .filter(|s| s.starts_with("INSERT INTO \"u\"") || s.starts_with("INSERT INTO \"t\""))
        .collect();
    assert_eq!(after.len(), 2, "{sqls:#?}");
    assert!(after[0].starts_with("INSERT INTO \"u\"") && after[1].starts_with("INSERT INTO \"t\""));
}

#[test]
fn successive_changes_of_a_row_collapse_into_one_statement_row() {
    let mut fake = Fake::default();
    let mut r = Replicator::new(&mut fake, "sys".into(), "slot".into(), Limits::default());
    let update = |id: i64, v: &str| RowChange::Update {
        old: None,
        new: vec![
            Cell::Value(Value::Integer(id)),
            Cell::Value(Value::Text(v.into())),
        ],
    };
    r.begin(0x100, 1).unwrap();
    // Row 1 and row 2 come again: each is one row of the statement, with its final values.
    for change in [
        insert(1),
        insert(2),
        insert(3),
        update(1, "a"),
        insert(4),
        update(2, "b"),
        update(2, "c"),
    ] {
        r.change(&table(), change).unwrap();
    }
    r.commit().unwrap();
    drop(r);
    let rows: Vec<Json> = insert_steps(&fake)
        .iter()
        .map(|s| {
            let args = &s["stmt"]["args"];
            if s["stmt"]["sql"].as_str().unwrap().contains("json_each") {
                serde_json::from_str(args[0]["value"].as_str().unwrap()).unwrap()
            } else {
                json!([args])
            }
        })
        .collect();
    let keys: Vec<Vec<i64>> = rows
        .iter()
        .map(|stmt| {
            stmt.as_array()
                .unwrap()
                .iter()
                .map(|row| match &row[0] {
                    Json::Number(n) => n.as_i64().unwrap(),
                    wire => wire["value"].as_str().unwrap().parse().unwrap(),
                })
                .collect()
        })
        .collect();
    assert_eq!(keys, vec![vec![1, 2, 3, 4]], "{rows:?}");
    let values: Vec<&Json> = rows[0].as_array().unwrap().iter().map(|r| &r[1]).collect();
    assert_eq!(
        values,
        [&json!("a"), &json!("c"), &json!("v3"), &json!("v4")]
    );
}

#[test]
fn statements_stay_under_the_parameter_limit() {
    let mut fake = Fake {
        no_json: true,
        ..Default::default()
    };
    let limits = Limits {
        max_records: 100_000,
        max_bytes: usize::MAX,
        ..Limits::default()
    };
    let mut r = Replicator::new(&mut fake, "sys".into(), "slot".into(), limits);
    r.begin(0x100, 1).unwrap();
    for id in 0..20_000 {
        r.change(&table(), insert(id)).unwrap();
    }
    r.commit().unwrap();
    drop(r);
    let inserts: Vec<usize> = insert_steps(&fake)
        .iter()
        .map(|s| s["stmt"]["args"].as_array().unwrap().len())
        .collect();
    assert_eq!(inserts.iter().sum::<usize>(), 40_000);
    assert!(
        inserts.iter().all(|&n| n <= crate::turso::sql::MAX_PARAMS),
        "{inserts:?}"
    );
}

#[test]
fn untracked_transactions_record_no_progress() {
    let mut fake = Fake {
        progress: Some(0x900),
        ..Default::default()
    };
    let mut r = Replicator::new(&mut fake, "sys".into(), "slot".into(), Limits::default());
    r.begin_untracked();
    r.truncate(&[table()]).unwrap();
    r.change(&table(), insert(1)).unwrap();
    assert!(r.commit().unwrap().is_some());
    drop(r);
    assert_eq!(fake.requests.len(), 2, "a schema read, no progress read");
    let sqls = step_sqls(&txns(&fake)[0].1);
    assert_eq!(
        sqls,
        [
            "BEGIN",
            "CREATE TABLE",
            "DELETE FROM",
            "INSERT INTO",
            "COMMIT",
            "ROLLBACK"
        ]
    );
}

#[test]
fn an_idle_stream_is_kept_open() {
    let mut fake = Fake::default();
    let limits = Limits {
        max_records: 3,
        keep_alive: Duration::ZERO,
        ..Limits::default()
    };
    let mut r = Replicator::new(&mut fake, "sys".into(), "slot".into(), limits);
    r.keep_alive().unwrap();
    r.begin(0x100, 1).unwrap();
    r.keep_alive().unwrap();
    // BEGIN, CREATE TABLE, the schema row and row 1 fill the first request; row 2 is pending.
    r.change(&table(), insert(1)).unwrap();
    r.change(&table(), insert(2)).unwrap();
    // The stream is open: the keep-alive sends the pending row, then an empty batch.
    r.keep_alive().unwrap();
    r.keep_alive().unwrap();
    r.change(&table(), insert(3)).unwrap();
    r.commit().unwrap();
    drop(r);
    let txn = txns(&fake);
    let sqls: Vec<Vec<String>> = txn.iter().map(|(_, b)| step_sqls(b)).collect();
    let want: [&[&str]; 4] = [
        &["BEGIN", "CREATE TABLE", "INSERT INTO"],
        &["INSERT INTO"],
        &[],
        // Row 3, then the progress row.
        &["INSERT INTO", "INSERT INTO", "COMMIT", "ROLLBACK"],
    ];
    assert_eq!(sqls, want, "{txn:?}");
    assert_eq!(txn[0].1["baton"], Json::Null);
    assert!(txn[1..].iter().all(|(_, b)| b["baton"] == "baton-1"));
    // With the default interval nothing extra is sent.
    let mut fake = Fake::default();
    let mut r = Replicator::new(&mut fake, "sys".into(), "slot".into(), Limits::default());
    r.begin(0x100, 1).unwrap();
    r.change(&table(), insert(1)).unwrap();
    r.keep_alive().unwrap();
    r.commit().unwrap();
    drop(r);
    assert_eq!(txns(&fake).len(), 1);
}

mod delivery;
mod group;
mod streaming;

#[test]
fn a_rewrite_replaces_the_table_once_per_rewrite() {
    let mut fake = Fake::default();
    let mut r = Replicator::new(&mut fake, "sys".into(), "slot".into(), Limits::default());
    let rewrite = |id: u32, row: i64| match insert(row) {
        RowChange::Insert { new } => RowChange::Rewrite { rewrite: id, new },
        _ => unreachable!(),
    };
    r.begin(0x100, 1).unwrap();
    r.change(&table(), insert(1)).unwrap();
    r.change(&table(), rewrite(7, 1)).unwrap();
    r.change(&table(), rewrite(7, 2)).unwrap();
    // A second rewrite of the same table in the transaction starts over.
    r.change(&table(), rewrite(8, 1)).unwrap();
    let line = r.commit().unwrap();
    drop(r);
    assert_eq!(
        line.as_deref(),
        Some("COMMIT 0/100: 1 change, 3 rows rewritten")
    );
    assert_eq!(
        step_sqls(&txns(&fake)[0].1),
        [
            "BEGIN",
            "CREATE TABLE",
            "INSERT INTO",
            "DROP TABLE",
            "CREATE TABLE",
            "INSERT INTO",
            "DROP TABLE",
            "CREATE TABLE",
            "INSERT INTO",
            "INSERT INTO", // the progress row
            "COMMIT",
            "ROLLBACK"
        ]
    );
}

#[test]
fn a_table_takes_over_the_name_of_a_dropped_one() {
    fn gone(source: &str) -> Option<Option<String>> {
        // "1.1" was dropped in PostgreSQL; "1.3" was renamed to u.
        match source {
            "1.1" => Some(None),
            "1.3" => Some(Some("u".into())),
            _ => None,
        }
    }
    let mut fake = Fake::default();
    let mut r = Replicator::new(&mut fake, "sys".into(), "slot".into(), Limits::default())
        .with_source_name(gone);
    let other = |source: &str| Table {
        source: source.into(),
        ..table()
    };
    r.begin(0x100, 1).unwrap();
    r.change(&table(), insert(1)).unwrap();
    r.commit().unwrap();
    // Another table named t: the first one is gone, so its Turso table is dropped.
    r.begin(0x200, 2).unwrap();
    r.change(&other("1.2"), insert(2)).unwrap();
    r.commit().unwrap();
    // A table named t while the holder (1.2) still exists under that name: a conflict.
    r.begin(0x300, 3).unwrap();
    let e = r.change(&other("1.4"), insert(3)).unwrap_err();
    assert!(matches!(e, PgTursoError::NameConflict { .. }), "{e}");
    r.abort();
    // A table named w while the holder (1.3) has been renamed to u: its Turso table follows.
    let named = |source: &str, name: &str| Table {
        source: source.into(),
        pg_name: name.into(),
        turso_name: name.into(),
        ..table()
    };
    r.begin(0x400, 4).unwrap();
    r.change(&named("1.3", "w"), insert(4)).unwrap();
    r.commit().unwrap();
    r.begin(0x500, 5).unwrap();
    r.change(&named("1.5", "w"), insert(5)).unwrap();
    r.commit().unwrap();
    drop(r);
    let last: Vec<String> = all_steps(&txns(&fake).last().unwrap().1)
        .iter()
        .map(|s| s["stmt"]["sql"].as_str().unwrap().to_string())
        .collect();
    assert!(
        last.contains(&"ALTER TABLE \"w\" RENAME TO \"u\"".to_string()),
        "{last:?}"
    );
    let sqls: Vec<String> = all_steps(&txns(&fake)[1].1)
        .iter()
        .map(|s| s["stmt"]["sql"].as_str().unwrap().to_string())
        .collect();
    assert!(
        sqls.contains(&"DROP TABLE IF EXISTS \"t\"".to_string()),
        "{sqls:?}"
    );
    assert!(
        sqls.iter()
            .any(|s| s.starts_with("DELETE FROM \"_pgturso_schema\"")),
        "{sqls:?}"
    );
}
