//! Group commit: consecutive decoded transactions in ONE Turso transaction.
//!
//! With [`Replicator::with_group_commit`], the COMMIT of a decoded transaction leaves its Turso
//! transaction open, and the next decoded transaction goes on in it; [`Replicator::finish_group`]
//! commits them all, with the progress row of the last one. A group also closes (is committed,
//! and the next decoded transaction starts another) at a source commit once it has filled a
//! request (`max_request_records` / `max_request_bytes`: it travels already) or has been open for
//! `group_max_ms` (default [`DEFAULT_MAX_AGE`]), so that Turso sees a long catch-up in steps and
//! no Turso transaction stays open long. Only whole source transactions are
//! in a group, so each is still all or nothing in Turso, in commit order; the group's first
//! request carries the progress guard of its first transaction, so a late or resent copy of it
//! is a no-op as for a single transaction. Whoever groups must confirm a transaction to
//! PostgreSQL only after `finish_group` returned (the worker decodes with
//! `pg_logical_slot_peek_changes` and advances the slot afterwards).

use super::*;

/// How long a group stays open, by default, before the next source commit closes it.
pub const DEFAULT_MAX_AGE: Duration = crate::options::DEFAULT_GROUP_MAX;

/// The Turso side of the held group, going on for the decoded transaction at `lsn`.
pub(super) fn continued(mut held: Txn, lsn: u64) -> Txn {
    held.lsn = lsn;
    held.xid = 0;
    held.commit_time = None;
    held.skip = None;
    held.refused = false;
    held.changes = 0;
    held.rewritten = 0;
    held
}

impl<T: Transport> Replicator<T> {
    /// Groups decoded transactions (see the module documentation).
    pub fn with_group_commit(mut self) -> Self {
        self.grouping = true;
        self
    }

    /// How long a group stays open at most (closed at the first source commit after that).
    pub fn with_group_max_age(mut self, age: Duration) -> Self {
        self.group_max_age = age;
        self
    }

    /// COMMIT of a decoded transaction inside a group: keeps its Turso transaction open.
    pub(super) fn hold(&mut self) -> Result<Option<String>, PgTursoError> {
        let mut txn = self.txn.take().expect("inside a transaction");
        if txn.refused {
            // Turso has the group's first transaction already (a late copy of an earlier
            // attempt landed): what it has of the rest is known only from its progress row.
            return Err(PgTursoError::Replication {
                lsn: format_lsn(txn.lsn),
                source: ClientError::Protocol(
                    "Turso has part of this group of transactions already; decoding again skips what it has".into(),
                ),
            });
        }
        let line = if txn.changes == 0 || txn.skip == Some(true) {
            None
        } else {
            self.held_progress = Some(Progress {
                lsn: txn.lsn,
                xid: Some(txn.xid),
                commit_time: txn.commit_time,
            });
            Some(commit_line(txn.lsn, txn.changes, txn.rewritten))
        };
        if let Some(p) = self.held_progress {
            // Held, named by the last transaction that sent something.
            txn.lsn = p.lsn;
            txn.xid = p.xid.unwrap_or(0);
            txn.commit_time = p.commit_time;
            // Full (a request of it travels already, or the next would) or old enough: closed
            // here, at a source commit.
            let full = txn.stream.is_some()
                || txn.pending_request.is_some()
                || txn.pending_records >= self.limits.max_records
                || txn.pending_bytes >= self.limits.max_bytes;
            self.held = Some(txn);
            let started = *self.group_started.get_or_insert_with(Instant::now);
            if full || started.elapsed() >= self.group_max_age {
                self.finish_group()?;
            }
        }
        Ok(line)
    }

    /// Commits the held group in Turso, with the progress of its last transaction. Returns the
    /// LSN of that transaction, `None` when nothing was held.
    pub fn finish_group(&mut self) -> Result<Option<u64>, PgTursoError> {
        self.group_started = None;
        let Some(mut txn) = self.held.take() else {
            return Ok(None);
        };
        let p = self
            .held_progress
            .take()
            .expect("a held group has progress");
        txn.changes = 1;
        self.txn = Some(txn);
        self.flush(true)?;
        let txn = self.txn.take().expect("inside a transaction");
        if txn.refused && !self.landed(p.lsn)? {
            return Err(PgTursoError::Replication {
                lsn: format_lsn(p.lsn),
                source: ClientError::Protocol(
                    "Turso has part of this group of transactions already; decoding again skips what it has".into(),
                ),
            });
        }
        self.remember(txn.created, txn.known, txn.dropped);
        self.applied_lsn = Some(Some(p.lsn));
        Ok(Some(p.lsn))
    }

    /// After the guard refused the group's commit: whether an earlier attempt of this very
    /// request landed (its answer was lost), so that Turso's progress is at the group's last
    /// transaction and Turso has all of it.
    fn landed(&mut self, last: u64) -> Result<bool, PgTursoError> {
        let progress =
            self.retrying(|r| r.read_progress())
                .map_err(|source| PgTursoError::Progress {
                    slot: self.slot.clone(),
                    source,
                })?;
        Ok(progress.is_some_and(|p| p.lsn >= last))
    }

    /// Before an error or the end of the session rolls back the current Turso transaction: the
    /// held group's is the current one between decoded transactions.
    pub(super) fn take_held(&mut self) {
        if self.txn.is_none() {
            self.txn = self.held.take();
        }
        self.held_progress = None;
        self.group_started = None;
    }
}
