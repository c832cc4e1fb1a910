//! Turso's progress row of a slot: reading it (with the check that this server's WAL has the
//! transaction it names), the guard that makes a transaction's first request a no-op when Turso
//! has it already, and the statements that move it forward or reset it.

use super::*;

impl<T: Transport> Replicator<T> {
    /// Whether the current transaction is already in Turso (reads the progress row once).
    pub(super) fn should_skip(&mut self) -> Result<bool, PgTursoError> {
        let lsn = self
            .txn
            .as_ref()
            .expect("change callback runs inside a transaction")
            .lsn;
        if let Some(skip) = self.txn.as_ref().and_then(|t| t.skip) {
            return Ok(skip);
        }
        let skip = self.applied()?.is_some_and(|a| lsn <= a);
        self.txn.as_mut().expect("checked above").skip = Some(skip);
        Ok(skip)
    }

    /// The LSN of the last transaction Turso has from this slot (read once per session).
    pub(super) fn applied(&mut self) -> Result<Option<u64>, PgTursoError> {
        if let Some(a) = self.applied_lsn {
            return Ok(a);
        }
        let progress =
            self.retrying(Self::read_progress)
                .map_err(|source| PgTursoError::Progress {
                    slot: self.slot.clone(),
                    source,
                })?;
        if let Some(p) = progress {
            self.check_history(&p)?;
        }
        let a = progress.map(|p| p.lsn);
        self.applied_lsn = Some(a);
        Ok(a)
    }

    /// See [`Replicator::with_history`].
    pub(super) fn check_history(&self, p: &Progress) -> Result<(), PgTursoError> {
        let Some((confirmed, commit_at)) = self.history else {
            return Ok(());
        };
        if p.lsn < confirmed {
            // Nothing decoded from here on is at or below it: nothing is skipped by it.
            return Ok(());
        }
        let why = match commit_at(p.lsn) {
            None => format!(
                "this server's WAL has no transaction committing at {}",
                format_lsn(p.lsn)
            ),
            Some((xid, time))
                if p.xid.is_some_and(|x| x != xid) || p.commit_time.is_some_and(|t| t != time) =>
            {
                format!(
                    "the transaction committing there is another one (xid {xid}, where Turso has xid {})",
                    p.xid.map_or_else(|| "?".to_string(), |x| x.to_string())
                )
            }
            Some(_) => return Ok(()),
        };
        Err(PgTursoError::Diverged {
            slot: self.slot.clone(),
            system_id: self.system_id.clone(),
            lsn: format_lsn(p.lsn),
            why,
        })
    }

    pub(super) fn read_progress(&mut self) -> Result<Option<Progress>, ClientError> {
        let select = || {
            format!(
                "SELECT \"lsn\", \"xid\", \"commit_time\" FROM {} WHERE \"system_id\" = ? AND \"slot\" = ?",
                sql::quote_ident(PROGRESS_TABLE)
            )
        };
        let args = vec![
            Value::Text(self.system_id.clone()),
            Value::Text(self.slot.clone()),
        ];
        let result = match self.read_bookkeeping(progress_ddl(), select(), args.clone(), "progress")
        {
            // A progress table made by pgturso before 0.2 lacks the identity columns.
            Err(ClientError::Stream { message, .. })
                if message.contains("no such column: xid")
                    || message.contains("no such column: commit_time") =>
            {
                self.migrate_progress()?;
                self.read_bookkeeping(progress_ddl(), select(), args, "progress")?
            }
            other => other?,
        };
        let Some(row) = result.rows.first() else {
            return Ok(None);
        };
        let lsn = row
            .first()
            .and_then(|v| v.as_i64())
            .ok_or_else(|| ClientError::Protocol(format!("unexpected progress value {row:?}")))?;
        let int = |i: usize| row.get(i).and_then(|v| v.as_i64());
        Ok(Some(Progress {
            lsn: lsn as u64,
            xid: int(1).map(|x| x as u32),
            commit_time: int(2),
        }))
    }

    /// Adds the identity columns to a progress table made before they existed.
    pub(super) fn migrate_progress(&mut self) -> Result<(), ClientError> {
        let alter = |col: &str| {
            hrana::query(
                &format!(
                    "ALTER TABLE {} ADD COLUMN \"{col}\" INTEGER",
                    sql::quote_ident(PROGRESS_TABLE)
                ),
                vec![],
            )
        };
        let req = PipelineRequest {
            baton: None,
            requests: vec![alter("xid"), alter("commit_time"), StreamRequest::Close],
        };
        // A column another session added meanwhile fails here as a duplicate: ignored.
        self.transport.pipeline(None, &req).map(|_| ())
    }
}

pub(super) fn progress_ddl() -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {} (\"system_id\" TEXT NOT NULL, \"slot\" TEXT NOT NULL, \"lsn\" INTEGER NOT NULL, \"lsn_text\" TEXT NOT NULL, \"updated_at\" TEXT NOT NULL, \"xid\" INTEGER, \"commit_time\" INTEGER, PRIMARY KEY (\"system_id\", \"slot\"))",
        sql::quote_ident(PROGRESS_TABLE)
    )
}

/// Records `p` as the slot's progress; it only ever moves forward.
pub(super) fn progress_upsert(system_id: &str, slot: &str, p: &Progress) -> Stmt {
    let t = sql::quote_ident(PROGRESS_TABLE);
    Stmt::new(
        format!(
            "INSERT INTO {t} (\"system_id\", \"slot\", \"lsn\", \"lsn_text\", \"updated_at\", \"xid\", \"commit_time\") VALUES (?, ?, ?, ?, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), ?, ?) ON CONFLICT (\"system_id\", \"slot\") DO UPDATE SET \"lsn\" = excluded.\"lsn\", \"lsn_text\" = excluded.\"lsn_text\", \"updated_at\" = excluded.\"updated_at\", \"xid\" = excluded.\"xid\", \"commit_time\" = excluded.\"commit_time\" WHERE excluded.\"lsn\" > {t}.\"lsn\""
        ),
        vec![
            Value::Text(system_id.to_string()),
            Value::Text(slot.to_string()),
            Value::Integer(p.lsn as i64),
            Value::Text(format_lsn(p.lsn)),
            p.xid.map_or(Value::Null, |x| Value::Integer(x.into())),
            p.commit_time.map_or(Value::Null, Value::Integer),
        ],
    )
}

/// Deletes a slot's progress row: an initial copy made for a new slot starts its history anew.
pub(super) fn progress_reset(system_id: &str, slot: &str) -> Vec<Stmt> {
    vec![
        Stmt::new(progress_ddl(), vec![]),
        Stmt::new(
            format!(
                "DELETE FROM {} WHERE \"system_id\" = ? AND \"slot\" = ?",
                sql::quote_ident(PROGRESS_TABLE)
            ),
            vec![
                Value::Text(system_id.to_string()),
                Value::Text(slot.to_string()),
            ],
        ),
    ]
}

/// What SQLite says when [`progress_guard`] refuses a transaction.
pub(super) const GUARD_REFUSAL: &str = "NOT NULL constraint failed: _pgturso_progress.lsn";

/// The first statement of a decoded transaction's first request, inside its Turso transaction:
/// it fails (a NOT NULL violation, and so every later step of the batch is skipped) when the
/// progress row of this slot has reached `lsn`, that is when Turso has the transaction already.
/// It updates nothing otherwise, but takes Turso's write lock, so no other writer can move the
/// progress row before this transaction commits.
pub(super) fn progress_guard(system_id: &str, slot: &str, lsn: u64) -> Stmt {
    Stmt::new(
        format!(
            "UPDATE {} SET \"lsn\" = NULL WHERE \"system_id\" = ? AND \"slot\" = ? AND \"lsn\" >= ?",
            sql::quote_ident(PROGRESS_TABLE)
        ),
        vec![
            Value::Text(system_id.to_string()),
            Value::Text(slot.to_string()),
            Value::Integer(lsn as i64),
        ],
    )
}

/// The batch of `resp` failed at its first statement, the [`progress_guard`].
pub(super) fn guard_refused(resp: &PipelineResponse, layout: &hrana::BatchLayout) -> bool {
    match resp.results.first() {
        Some(StreamResult::Ok {
            response: StreamResponse::Batch { result },
        }) => hrana::first_step_error(result).is_some_and(|(step, e)| {
            step == layout.first_stmt && e.message.contains(GUARD_REFUSAL)
        }),
        _ => false,
    }
}
