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
        let mut results = vec![];
        let mut closes = false;
        for r in body["requests"].as_array().unwrap() {
            match r["type"].as_str().unwrap() {
                "execute" => {
                    let rows = match (
                        r["stmt"]["sql"].as_str().unwrap().starts_with("SELECT"),
                        self.progress,
                    ) {
                        (true, Some(p)) => json!([[{"type": "integer", "value": p.to_string()}]]),
                        _ => json!([]),
                    };
                    results.push(json!({"type": "ok", "response": {"type": "execute", "result": {"cols": [], "rows": rows, "affected_row_count": 0}}}));
                }
                "batch" => {
                    let mut res = vec![];
                    let mut errs = vec![];
                    let mut failed = false;
                    for step in r["batch"]["steps"].as_array().unwrap() {
                        let sql = step["stmt"]["sql"].as_str().unwrap();
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
        let resp = json!({
            "baton": if closes { Json::Null } else { json!("baton-1") },
            "base_url": self.base_url,
            "results": results,
        });
        Ok(serde_json::from_value(resp).unwrap())
    }
}

fn table() -> Table {
    Table {
        pg_schema: "public".into(),
        pg_name: "t".into(),
        turso_name: "t".into(),
        columns: vec![
            Column {
                name: "id".into(),
                sql_type: SqlType::Integer,
                not_null: true,
            },
            Column {
                name: "v".into(),
                sql_type: SqlType::Text,
                not_null: false,
            },
        ],
        key: vec![0],
        key_is_primary: true,
        identity_full: false,
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

fn step_sqls(req: &Json) -> Vec<String> {
    req["requests"][0]["batch"]["steps"]
        .as_array()
        .unwrap()
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
    r.begin(0x100);
    assert!(r.change(&table(), &insert(1)).unwrap());
    assert!(r.change(&table(), &insert(2)).unwrap());
    let out = r.commit().unwrap();
    assert_eq!(out.as_deref(), Some("COMMIT 0/100: 2 changes"));
    drop(r);
    assert_eq!(
        fake.requests.len(),
        2,
        "progress read + one transaction request"
    );
    let (_, txn) = &fake.requests[1];
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
    let rows = &txn["requests"][0]["batch"]["steps"][2]["stmt"];
    assert!(
        rows["sql"]
            .as_str()
            .unwrap()
            .contains("VALUES (?, ?), (?, ?)"),
        "two rows, one statement"
    );
    assert_eq!(rows["args"].as_array().unwrap().len(), 4);
    let progress = &txn["requests"][0]["batch"]["steps"][3]["stmt"];
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
        r.begin(lsn);
        r.change(&table(), &insert(lsn as i64)).unwrap();
        r.commit().unwrap();
    }
    drop(r);
    assert_eq!(
        step_sqls(&fake.requests[2].1),
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
    r.begin(0x200);
    assert!(!r.change(&table(), &insert(1)).unwrap());
    assert_eq!(r.commit().unwrap(), None);
    r.begin(0x300);
    assert!(r.change(&table(), &insert(2)).unwrap());
    assert!(r.commit().unwrap().is_some());
    drop(r);
    assert_eq!(
        fake.requests.len(),
        2,
        "one progress read, then only the new transaction"
    );
}

#[test]
fn empty_transactions_send_nothing() {
    let mut fake = Fake::default();
    let mut r = Replicator::new(&mut fake, "sys".into(), "slot".into(), Limits::default());
    r.begin(0x100);
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
        max_records: 2,
        max_bytes: 1 << 20,
    };
    let mut r = Replicator::new(&mut fake, "sys".into(), "slot".into(), limits);
    r.begin(0x100);
    for id in 0..5 {
        r.change(&table(), &insert(id)).unwrap();
    }
    r.commit().unwrap();
    drop(r);
    let txn: Vec<_> = fake.requests[1..].iter().collect();
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
    r.begin(0x16B3748);
    r.change(&table(), &insert(1)).unwrap();
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
    r.begin(0x100);
    r.change(&table(), &insert(1)).unwrap();
    assert!(r.commit().is_err());
    assert!(r.ensured.is_empty());
}

#[test]
fn grouping_keeps_the_order_of_changes() {
    let mut fake = Fake::default();
    let mut r = Replicator::new(&mut fake, "sys".into(), "slot".into(), Limits::default());
    let mut other = table();
    other.turso_name = "u".into();
    let delete = |id| RowChange::Delete {
        old: Some(vec![
            Cell::Value(Value::Integer(id)),
            Cell::Value(Value::Null),
        ]),
    };
    r.begin(0x100);
    for change in [insert(1), insert(2), delete(1), delete(2), insert(1)] {
        r.change(&table(), &change).unwrap();
    }
    r.change(&other, &insert(9)).unwrap();
    r.change(&table(), &insert(3)).unwrap();
    assert_eq!(
        r.commit().unwrap().as_deref(),
        Some("COMMIT 0/100: 7 changes")
    );
    drop(r);
    let steps = fake.requests[1].1["requests"][0]["batch"]["steps"]
        .as_array()
        .unwrap()
        .clone();
    let sqls: Vec<&str> = steps
        .iter()
        .map(|s| s["stmt"]["sql"].as_str().unwrap())
        .collect();
    assert!(
        sqls[2].starts_with("INSERT INTO \"t\"") && sqls[2].contains("(?, ?), (?, ?)"),
        "{}",
        sqls[2]
    );
    assert_eq!(sqls[3], "DELETE FROM \"t\" WHERE \"id\" IN (?, ?)");
    assert!(sqls[4].starts_with("INSERT INTO \"t\""));
    assert!(sqls[5].starts_with("CREATE TABLE IF NOT EXISTS \"u\""));
    assert!(sqls[6].starts_with("INSERT INTO \"u\""));
    assert!(sqls[7].starts_with("INSERT INTO \"t\"") && !sqls[7].contains("), ("));
}

#[test]
fn statements_stay_under_the_parameter_limit() {
    let mut fake = Fake::default();
    let limits = Limits {
        max_records: 100_000,
        max_bytes: usize::MAX,
    };
    let mut r = Replicator::new(&mut fake, "sys".into(), "slot".into(), limits);
    r.begin(0x100);
    for id in 0..20_000 {
        r.change(&table(), &insert(id)).unwrap();
    }
    r.commit().unwrap();
    drop(r);
    let steps = fake.requests[1].1["requests"][0]["batch"]["steps"]
        .as_array()
        .unwrap()
        .clone();
    let inserts: Vec<usize> = steps
        .iter()
        .filter(|s| {
            s["stmt"]["sql"]
                .as_str()
                .unwrap()
                .starts_with("INSERT INTO \"t\"")
        })
        .map(|s| s["stmt"]["args"].as_array().unwrap().len())
        .collect();
    assert_eq!(inserts.iter().sum::<usize>(), 40_000);
    assert!(
        inserts.iter().all(|&n| n <= crate::sql::MAX_PARAMS),
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
    r.change(&table(), &insert(1)).unwrap();
    assert!(r.commit().unwrap().is_some());
    drop(r);
    assert_eq!(fake.requests.len(), 1, "no progress read");
    let sqls = step_sqls(&fake.requests[0].1);
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
