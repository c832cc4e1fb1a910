//! Reading Turso's answer to a transaction's request: the stream to go on with, a statement that
//! failed (named, shortened), a batch refused as a whole, and SQLite's busy lock (transient).

use super::*;

/// The batch of `resp` failed because another connection held SQLite's write lock
/// (SQLITE_BUSY, "database is locked"): transient, like a 503.
pub(super) fn busy(resp: &PipelineResponse) -> bool {
    let locked = |e: &hrana::HranaError| {
        e.code.as_deref().is_some_and(|c| c.contains("SQLITE_BUSY"))
            || e.message.contains("database is locked")
    };
    match resp.results.first() {
        Some(StreamResult::Ok {
            response: StreamResponse::Batch { result },
        }) => hrana::first_step_error(result).is_some_and(|(_, e)| locked(e)),
        Some(StreamResult::Error { error }) => locked(error),
        _ => false,
    }
}

/// Checks a transaction batch response; returns the stream (baton, base_url) to continue on.
pub(super) fn check_batch(
    resp: PipelineResponse,
    layout: &hrana::BatchLayout,
    sqls: &[String],
    commit: bool,
) -> Result<Option<(String, Option<String>)>, ClientError> {
    let PipelineResponse {
        baton,
        base_url,
        results,
    } = resp;
    let result = match results.into_iter().next() {
        Some(StreamResult::Ok {
            response: StreamResponse::Batch { result },
        }) => result,
        Some(StreamResult::Error { error }) => return Err(batch_error(error, layout, sqls)),
        other => {
            return Err(ClientError::Protocol(format!(
                "expected a batch result, got {other:?}"
            )))
        }
    };
    if let Some((step, err)) = hrana::first_step_error(&result) {
        let sql = step
            .checked_sub(layout.first_stmt)
            .and_then(|i| sqls.get(i))
            .map_or_else(|| "BEGIN/COMMIT".to_string(), |s| shorten(s));
        return Err(ClientError::Statement {
            message: err.message.clone(),
            sql,
        });
    }
    let last = layout
        .commit_step
        .unwrap_or(layout.first_stmt + layout.stmts);
    let ran_all = (0..last.min(result.step_results.len()))
        .all(|i| result.step_results[i].is_some())
        && layout
            .commit_step
            .is_none_or(|c| result.step_results.get(c).is_some_and(Option::is_some));
    if !ran_all {
        return Err(ClientError::Protocol(
            "Turso skipped a step of the transaction without reporting an error".into(),
        ));
    }
    if commit {
        return Ok(None);
    }
    match baton {
        Some(b) => Ok(Some((b, base_url))),
        None => Err(ClientError::Protocol(
            "Turso did not keep the transaction's stream open (no baton)".into(),
        )),
    }
}

/// A whole batch refused: about the stream (expired, bad baton) it is transient; otherwise a
/// statement of it could not even be prepared, which no retry fixes.
pub(super) fn batch_error(
    error: hrana::HranaError,
    layout: &hrana::BatchLayout,
    sqls: &[String],
) -> ClientError {
    let code = error.code.clone().unwrap_or_default();
    if code.contains("STREAM") || code.contains("BATON") || code.contains("PROTO") {
        return ClientError::Stream {
            message: error.message,
            code: error.code,
        };
    }
    let sql = sqls
        .iter()
        .skip(layout.first_stmt.saturating_sub(1).min(sqls.len()))
        .find(|s| {
            !s.starts_with("CREATE TABLE IF NOT EXISTS \"_pgturso")
                && !s.contains("_pgturso_schema")
                && !s.starts_with("UPDATE \"_pgturso_progress\"")
        })
        .or(sqls.first())
        .map_or_else(String::new, |s| shorten(s));
    ClientError::Statement {
        message: error.message,
        sql,
    }
}

pub(super) fn shorten(sql: &str) -> String {
    match sql.char_indices().nth(200) {
        Some((cut, _)) => format!("{}...", &sql[..cut]),
        None => sql.to_string(),
    }
}
