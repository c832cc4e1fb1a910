//! Hrana-over-HTTP wire format (pipeline requests and responses) and the batches pgturso sends.
//!
//! Plain serde, no PostgreSQL: a transaction becomes one or more `batch` requests on one stream, each
//! step conditioned on the previous one, so a failed step stops everything after it.

use base64::Engine;
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};

use crate::model::Value;
use crate::turso::sql::Stmt;

/// Body of `POST /v2/pipeline`.
#[derive(Debug, Serialize)]
pub struct PipelineRequest {
    pub baton: Option<String>,
    pub requests: Vec<StreamRequest>,
}

#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamRequest {
    Execute { stmt: WireStmt },
    Batch { batch: WireBatch },
    Close,
}

#[derive(Debug, Serialize)]
pub struct WireStmt {
    pub sql: String,
    pub args: Vec<Value>,
    pub want_rows: bool,
}

#[derive(Debug, Serialize)]
pub struct WireBatch {
    pub steps: Vec<BatchStep>,
}

#[derive(Debug, Serialize)]
pub struct BatchStep {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub condition: Option<Cond>,
    pub stmt: WireStmt,
}

#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Cond {
    Ok { step: usize },
    Not { cond: Box<Cond> },
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        match self {
            Value::Null => m.serialize_entry("type", "null")?,
            Value::Integer(i) => {
                m.serialize_entry("type", "integer")?;
                // Hrana carries integers as strings so 64-bit values survive JSON.
                m.serialize_entry("value", &i.to_string())?;
            }
            Value::Float(f) => {
                m.serialize_entry("type", "float")?;
                m.serialize_entry("value", f)?;
            }
            Value::Text(t) => {
                m.serialize_entry("type", "text")?;
                m.serialize_entry("value", t)?;
            }
            Value::Blob(b) => {
                m.serialize_entry("type", "blob")?;
                m.serialize_entry(
                    "base64",
                    &base64::engine::general_purpose::STANDARD.encode(b),
                )?;
            }
        }
        m.end()
    }
}

/// A value in a response row.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WireValue {
    Null,
    Integer { value: String },
    Float { value: f64 },
    Text { value: String },
    Blob { base64: String },
}

/// Body of a pipeline response.
#[derive(Debug, Deserialize)]
pub struct PipelineResponse {
    pub baton: Option<String>,
    pub base_url: Option<String>,
    pub results: Vec<StreamResult>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamResult {
    Ok { response: StreamResponse },
    Error { error: HranaError },
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamResponse {
    Execute {
        result: StmtResult,
    },
    Batch {
        result: BatchResult,
    },
    Close,
    #[serde(other)]
    Other,
}

#[derive(Debug, Clone, Deserialize)]
pub struct HranaError {
    pub message: String,
    #[serde(default)]
    pub code: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct StmtResult {
    #[serde(default)]
    pub rows: Vec<Vec<WireValue>>,
    #[serde(default)]
    pub affected_row_count: u64,
}

#[derive(Debug, Deserialize)]
pub struct BatchResult {
    pub step_results: Vec<Option<StmtResult>>,
    pub step_errors: Vec<Option<HranaError>>,
}

fn wire(stmt: Stmt) -> WireStmt {
    WireStmt {
        sql: stmt.sql,
        args: stmt.args,
        want_rows: false,
    }
}

/// A statement with its rows requested (for reads).
pub fn query(sql: &str, args: Vec<Value>) -> StreamRequest {
    StreamRequest::Execute {
        stmt: WireStmt {
            sql: sql.to_string(),
            args,
            want_rows: true,
        },
    }
}

/// The shape of one transaction batch: whether it opens and/or closes the Turso transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchPart {
    pub begin: bool,
    pub commit: bool,
}

/// Where the statements of a built batch sit, to read its result back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchLayout {
    /// Step index of the first user statement.
    pub first_stmt: usize,
    /// Number of user statements.
    pub stmts: usize,
    /// Step index of COMMIT, when the batch commits.
    pub commit_step: Option<usize>,
}

/// Builds one batch of a transaction: `BEGIN`? statements `COMMIT`? (+ `ROLLBACK` if COMMIT did
/// not run), every step conditioned on the previous one succeeding.
pub fn transaction_batch(stmts: Vec<Stmt>, part: BatchPart) -> (StreamRequest, BatchLayout) {
    let mut steps: Vec<BatchStep> = Vec::with_capacity(stmts.len() + 3);
    let push = |steps: &mut Vec<BatchStep>, stmt: Stmt| {
        let condition = steps.len().checked_sub(1).map(|p| Cond::Ok { step: p });
        steps.push(BatchStep {
            condition,
            stmt: wire(stmt),
        });
    };
    if part.begin {
        push(&mut steps, Stmt::new("BEGIN", vec![]));
    }
    let first_stmt = steps.len();
    let n = stmts.len();
    for s in stmts {
        push(&mut steps, s);
    }
    let mut commit_step = None;
    if part.commit {
        push(&mut steps, Stmt::new("COMMIT", vec![]));
        let c = steps.len() - 1;
        commit_step = Some(c);
        steps.push(BatchStep {
            condition: Some(Cond::Not {
                cond: Box::new(Cond::Ok { step: c }),
            }),
            stmt: wire(Stmt::new("ROLLBACK", vec![])),
        });
    }
    (
        StreamRequest::Batch {
            batch: WireBatch { steps },
        },
        BatchLayout {
            first_stmt,
            stmts: n,
            commit_step,
        },
    )
}

/// The first failed step of a batch, as (step index, error).
pub fn first_step_error(result: &BatchResult) -> Option<(usize, &HranaError)> {
    result
        .step_errors
        .iter()
        .enumerate()
        .find_map(|(i, e)| e.as_ref().map(|e| (i, e)))
}

impl WireValue {
    /// The value as an i64, when it is an integer.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            WireValue::Integer { value } => value.parse().ok(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_encode_as_hrana() {
        let json = serde_json::to_string(&vec![
            Value::Null,
            Value::Integer(i64::MIN),
            Value::Float(1.5),
            Value::Text("a\"b".into()),
            Value::Blob(vec![0, 1, 255]),
        ])
        .unwrap();
        assert_eq!(
            json,
            r#"[{"type":"null"},{"type":"integer","value":"-9223372036854775808"},{"type":"float","value":1.5},{"type":"text","value":"a\"b"},{"type":"blob","base64":"AAH/"}]"#
        );
    }

    #[test]
    fn single_request_transaction_golden_json() {
        let (req, layout) = transaction_batch(
            vec![Stmt::new(
                "INSERT INTO \"t\" (\"id\") VALUES (?)",
                vec![Value::Integer(45)],
            )],
            BatchPart {
                begin: true,
                commit: true,
            },
        );
        let body = PipelineRequest {
            baton: None,
            requests: vec![req, StreamRequest::Close],
        };
        let json = serde_json::to_string(&body).unwrap();
        assert_eq!(
            json,
            concat!(
                r#"{"baton":null,"requests":[{"type":"batch","batch":{"steps":["#,
                r#"{"stmt":{"sql":"BEGIN","args":[],"want_rows":false}},"#,
                r#"{"condition":{"type":"ok","step":0},"stmt":{"sql":"INSERT INTO \"t\" (\"id\") VALUES (?)","args":[{"type":"integer","value":"45"}],"want_rows":false}},"#,
                r#"{"condition":{"type":"ok","step":1},"stmt":{"sql":"COMMIT","args":[],"want_rows":false}},"#,
                r#"{"condition":{"type":"not","cond":{"type":"ok","step":2}},"stmt":{"sql":"ROLLBACK","args":[],"want_rows":false}}"#,
                r#"]}},{"type":"close"}]}"#
            )
        );
        assert_eq!(
            layout,
            BatchLayout {
                first_stmt: 1,
                stmts: 1,
                commit_step: Some(2)
            }
        );
    }

    #[test]
    fn continuation_batch_has_no_begin_and_no_leading_condition() {
        let (req, layout) = transaction_batch(
            vec![Stmt::new("DELETE FROM \"t\"", vec![])],
            BatchPart {
                begin: false,
                commit: false,
            },
        );
        let json = serde_json::to_string(&req).unwrap();
        assert_eq!(
            json,
            r#"{"type":"batch","batch":{"steps":[{"stmt":{"sql":"DELETE FROM \"t\"","args":[],"want_rows":false}}]}}"#
        );
        assert_eq!(layout.commit_step, None);
    }

    #[test]
    fn parses_batch_response_with_step_error() {
        let body = r#"{"baton":null,"base_url":null,"results":[{"type":"ok","response":{"type":"batch","result":{
            "step_results":[{"cols":[],"rows":[],"affected_row_count":0},null],
            "step_errors":[null,{"message":"SQLite error: no such table: nope","code":"SQLITE_UNKNOWN"}]}}},
            {"type":"ok","response":{"type":"close"}}]}"#;
        let resp: PipelineResponse = serde_json::from_str(body).unwrap();
        match &resp.results[0] {
            StreamResult::Ok {
                response: StreamResponse::Batch { result },
            } => {
                let (i, e) = first_step_error(result).unwrap();
                assert_eq!(i, 1);
                assert!(e.message.contains("no such table"));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(
            resp.results[1],
            StreamResult::Ok {
                response: StreamResponse::Close
            }
        ));
    }
}
