//! The one error enum, its SQLSTATE mapping, and redaction of secrets before anything is reported.

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::PgSqlErrorCode;

use crate::turso::client::ClientError;
use crate::turso::sql::StmtError;

#[derive(Debug, thiserror::Error)]
pub enum PgTursoError {
    #[error("could not parse value \"{value}\" for parameter \"{name}\"")]
    InvalidOption {
        name: String,
        value: String,
        hint: String,
    },
    #[error("option \"{name}\" = \"{value}\" is unknown")]
    UnknownOption { name: String, value: String },
    #[error("conflicting or redundant options")]
    RedundantOption { name: String },
    #[error("option \"url\" is required")]
    MissingUrl,
    #[error("option \"group_commit\" is only for pgturso's publication worker")]
    GroupCommitOutsideWorker,
    #[error(
        "cannot replicate {operation} on table \"{table}\": it has no replica identity (no primary key, or REPLICA IDENTITY NOTHING)"
    )]
    NoReplicaIdentity {
        table: String,
        /// The table name as SQL (quoted), for the hint.
        quoted: String,
        operation: String,
    },
    #[error(
        "the column list of table \"{table}\" in its publication leaves out key column {columns}"
    )]
    KeyNotPublished { table: String, columns: String },
    #[error(
        "cannot replicate an UPDATE that brings a row of table \"{table}\" into its publication's row filter: the WAL does not carry the unchanged TOASTed value of column \"{column}\""
    )]
    FilterEntryWithoutValue {
        table: String,
        /// The table name as SQL (quoted), for the hint.
        quoted: String,
        column: String,
    },
    #[error("could not replicate transaction {lsn} to Turso: {source}")]
    Replication {
        lsn: String,
        #[source]
        source: ClientError,
    },
    #[error("could not copy rows to Turso: {source}")]
    Copy {
        #[source]
        source: ClientError,
    },
    #[error("could not read the replication progress of slot \"{slot}\" from Turso: {source}")]
    Progress {
        slot: String,
        #[source]
        source: ClientError,
    },
    #[error("could not read pgturso's table bookkeeping (_pgturso_schema) from Turso: {source}")]
    Schema {
        #[source]
        source: ClientError,
    },
    #[error("Turso has transaction {lsn} of slot \"{slot}\", which this PostgreSQL server never committed")]
    Diverged {
        slot: String,
        system_id: String,
        lsn: String,
        why: String,
    },
    #[error("Turso table \"{turso}\" already holds the replica of another PostgreSQL table, so \"{table}\" cannot be replicated into it")]
    NameConflict { table: String, turso: String },
    #[error("cannot follow the schema change of table \"{table}\" in Turso: {what}")]
    SchemaChange { table: String, what: String },
    #[error("could not keep streamed transaction {xid} in a local file: {source}")]
    Spool {
        xid: u32,
        #[source]
        source: std::io::Error,
    },
    #[error("could not decode a value of column \"{column}\" of table \"{table}\": {reason}")]
    Value {
        table: String,
        column: String,
        reason: String,
    },
}

impl From<StmtError> for PgTursoError {
    fn from(e: StmtError) -> Self {
        match e {
            StmtError::SchemaChange { table, what } => PgTursoError::SchemaChange { table, what },
            StmtError::NoReplicaIdentity {
                table,
                quoted,
                operation,
            } => PgTursoError::NoReplicaIdentity {
                table,
                quoted,
                operation,
            },
        }
    }
}

impl PgTursoError {
    pub fn sqlstate(&self) -> PgSqlErrorCode {
        use PgSqlErrorCode::*;
        match self {
            PgTursoError::InvalidOption { .. } | PgTursoError::UnknownOption { .. } => {
                ERRCODE_INVALID_PARAMETER_VALUE
            }
            PgTursoError::RedundantOption { .. } => ERRCODE_SYNTAX_ERROR,
            PgTursoError::MissingUrl | PgTursoError::GroupCommitOutsideWorker => {
                ERRCODE_INVALID_PARAMETER_VALUE
            }
            PgTursoError::NoReplicaIdentity { .. } => ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            PgTursoError::KeyNotPublished { .. } => ERRCODE_INVALID_COLUMN_REFERENCE,
            PgTursoError::FilterEntryWithoutValue { .. } => {
                ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE
            }
            PgTursoError::Replication { source, .. }
            | PgTursoError::Progress { source, .. }
            | PgTursoError::Schema { source }
            | PgTursoError::Copy { source } => client_sqlstate(source),
            PgTursoError::Value { .. } => ERRCODE_DATA_EXCEPTION,
            PgTursoError::SchemaChange { .. } => ERRCODE_FEATURE_NOT_SUPPORTED,
            PgTursoError::NameConflict { .. } => ERRCODE_DUPLICATE_TABLE,
            PgTursoError::Diverged { .. } => ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            PgTursoError::Spool { .. } => ERRCODE_IO_ERROR,
        }
    }

    pub fn detail(&self) -> Option<String> {
        match self {
            PgTursoError::RedundantOption { name } => {
                Some(format!("Option \"{name}\" is given more than once."))
            }
            PgTursoError::Replication { .. }
            | PgTursoError::Progress { .. }
            | PgTursoError::Schema { .. } => Some(
                "Nothing of this transaction was applied in Turso, or all of it was; the slot did not advance past it."
                    .to_string(),
            ),
            PgTursoError::Spool { .. } => Some(
                "pgturso keeps a large transaction that PostgreSQL streams to it in base/pgsql_tmp of the data directory; the slot did not advance past it.".to_string(),
            ),
            PgTursoError::Copy { .. } => Some(
                "The rows are sent in one Turso transaction: nothing of this call was applied.".to_string(),
            ),
            PgTursoError::Diverged { why, .. } => Some(format!(
                "Turso's progress row for this slot is at or past where decoding starts, but {why}. PostgreSQL was restored from a backup taken before Turso received that transaction, or the slot was created again under the same name: replicating on would skip this server's new transactions up to that LSN as if Turso had them. Nothing was applied and the slot did not advance."
            )),
            _ => None,
        }
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            PgTursoError::InvalidOption { hint, .. } => Some(hint.clone()),
            PgTursoError::Diverged { slot, system_id, .. } => Some(format!(
                "Re-sync Turso from this server: empty or drop the replicated tables in Turso and delete their progress row (DELETE FROM _pgturso_progress WHERE system_id = '{system_id}' AND slot = '{slot}'), then copy the tables again and replicate from a new slot. With the SQL API: SELECT turso_unschedule(name, drop_slot => true), then replicate or schedule the table again (its initial copy resets Turso's table and progress)."
            )),
            PgTursoError::UnknownOption { .. } => Some(
                "Valid options are: url, auth, auth_file, table_name, publication_names, ca_file, timeout_ms, retry_ms, keepalive_ms, max_request_records, max_request_bytes, streaming, decoding_work_mem, skip_snapshot, skip_snapshots.".to_string(),
            ),
            PgTursoError::GroupCommitOutsideWorker => Some(
                "Transactions of a group reach Turso only when the decoding call ends, after pg_logical_slot_get_changes and pg_recvlogical have confirmed them: leave the option out, or use turso_start() for continuous replication with group commit.".to_string(),
            ),
            PgTursoError::MissingUrl => Some(
                "Pass the Turso database URL, e.g. pg_logical_slot_get_changes('slot', NULL, NULL, 'url', 'http://127.0.0.1:8080/', 'auth', '<token>').".to_string(),
            ),
            PgTursoError::NoReplicaIdentity { quoted, .. } => Some(format!(
                "Add a primary key to the table, or run ALTER TABLE {quoted} REPLICA IDENTITY FULL (a table that has a primary key but REPLICA IDENTITY NOTHING: ALTER TABLE {quoted} REPLICA IDENTITY DEFAULT). Changes written before that carry no old row and cannot be applied: copy the table again (with the SQL API: turso_unschedule(name, drop_slot => true), then schedule or replicate it again)."
            )),
            PgTursoError::KeyNotPublished { .. } => Some(
                "pgturso identifies a row in Turso by the table's key: add the key columns to the column list (ALTER PUBLICATION … SET TABLE t (…)), or publish the table without one.".to_string(),
            ),
            PgTursoError::FilterEntryWithoutValue { quoted, .. } => Some(format!(
                "Such a row is inserted into Turso whole, and PostgreSQL logs a value it did not change only with REPLICA IDENTITY FULL: run ALTER TABLE {quoted} REPLICA IDENTITY FULL. Changes written before that stay unreplicable: then copy the table again (turso_stop(publication, drop => true), then turso_start)."
            )),
            PgTursoError::Replication { source, .. }
            | PgTursoError::Progress { source, .. }
            | PgTursoError::Schema { source }
            | PgTursoError::Copy { source } => Some(source.hint()),
            PgTursoError::NameConflict { .. } => Some(
                "SQLite table names ignore case, and tables outside public are named \"schema.table\": replicate only one of the two (option table_name) or rename one. If the other table no longer exists, delete its row from _pgturso_schema.".to_string(),
            ),
            PgTursoError::SchemaChange { .. } => Some(
                "Give the table a primary key (or a replica identity index), or rename one of those columns.".to_string(),
            ),
            PgTursoError::Spool { .. } => Some(
                "Check the free space and permissions of the data directory, or decode with option streaming off.".to_string(),
            ),
            PgTursoError::Value { .. } | PgTursoError::RedundantOption { .. } => None,
        }
    }

    /// The error as a PostgreSQL report, with every secret removed from every field.
    pub fn into_report(self, secrets: &[&str], funcname: &'static str) -> ErrorReport {
        let mut report = ErrorReport::new(
            self.sqlstate(),
            redact(&self.to_string(), secrets),
            funcname,
        );
        if let Some(d) = self.detail() {
            report = report.set_detail(redact(&d, secrets));
        }
        if let Some(h) = self.hint() {
            report = report.set_hint(redact(&h, secrets));
        }
        report
    }
}

/// Replaces every secret (and any `Bearer` token or credentialed URL) in `text` with `***`.
pub fn redact(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_string();
    for s in secrets {
        if s.len() >= 3 {
            out = out.replace(s, "***");
        }
    }
    redact_bearer(&redact_url_userinfo(&out))
}

fn redact_bearer(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("Bearer ") {
        out.push_str(&rest[..pos + 7]);
        let tail = &rest[pos + 7..];
        let end = tail
            .find(|c: char| c.is_whitespace() || c == '"' || c == '\'')
            .unwrap_or(tail.len());
        if end > 0 {
            out.push_str("***");
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// `scheme://user:pass@host/p?query` -> `scheme://***@host/p?***` (a query may carry a token).
fn redact_url_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("://") {
        out.push_str(&rest[..pos + 3]);
        let tail = &rest[pos + 3..];
        let url_end = tail
            .find(|c: char| c.is_whitespace() || c == '"' || c == '\'')
            .unwrap_or(tail.len());
        let url = &tail[..url_end];
        let authority_end = url.find(['/', '?', '#']).unwrap_or(url.len());
        let (authority, path) = url.split_at(authority_end);
        match authority.rfind('@') {
            Some(at) => {
                out.push_str("***");
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        match path.find('?') {
            Some(q) => {
                out.push_str(&path[..q]);
                out.push_str("?***");
            }
            None => out.push_str(path),
        }
        rest = &tail[url_end..];
    }
    out.push_str(rest);
    out
}

/// The SQLSTATE of a Turso client error, at the boundary where it becomes a PostgreSQL error.
fn client_sqlstate(err: &ClientError) -> PgSqlErrorCode {
    use PgSqlErrorCode::*;
    match err {
        ClientError::Connect { .. } | ClientError::Network { .. } | ClientError::Timeout { .. } => {
            ERRCODE_CONNECTION_FAILURE
        }
        ClientError::Http { .. } | ClientError::Stream { .. } => ERRCODE_CONNECTION_FAILURE,
        ClientError::Auth { .. } => ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION,
        ClientError::Protocol(_) => ERRCODE_PROTOCOL_VIOLATION,
        ClientError::Tls(_) => ERRCODE_INVALID_PARAMETER_VALUE,
        ClientError::Statement { .. } => ERRCODE_EXTERNAL_ROUTINE_EXCEPTION,
        ClientError::Busy => ERRCODE_LOCK_NOT_AVAILABLE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_known_secrets() {
        assert_eq!(
            redact("token s3cr3t failed, again s3cr3t", &["s3cr3t"]),
            "token *** failed, again ***"
        );
    }

    #[test]
    fn redacts_bearer_and_userinfo() {
        assert_eq!(
            redact("header Authorization: Bearer abc.def.ghi sent", &[]),
            "header Authorization: Bearer *** sent"
        );
        assert_eq!(
            redact("connect to https://user:pw@host:8080/x failed", &[]),
            "connect to https://***@host:8080/x failed"
        );
        assert_eq!(
            redact("plain http://127.0.0.1:8080/ ok", &[]),
            "plain http://127.0.0.1:8080/ ok"
        );
        assert_eq!(
            redact("url \"libsql://db.turso.io?authToken=eyJ.x.y\" bad", &[]),
            "url \"libsql://db.turso.io?***\" bad"
        );
    }

    #[test]
    fn messages_follow_postgres_style() {
        let e = PgTursoError::UnknownOption {
            name: "foo".into(),
            value: "bar".into(),
        };
        assert_eq!(e.to_string(), "option \"foo\" = \"bar\" is unknown");
        assert_eq!(
            PgTursoError::RedundantOption { name: "url".into() }.to_string(),
            "conflicting or redundant options"
        );
    }

    #[test]
    fn a_divergence_is_object_not_in_prerequisite_state() {
        let err = PgTursoError::Diverged {
            slot: "s".into(),
            system_id: "1".into(),
            lsn: "0/100".into(),
            why: "w".into(),
        };
        assert_eq!(
            err.sqlstate(),
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE
        );
    }
}
