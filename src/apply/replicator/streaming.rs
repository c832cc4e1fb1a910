//! Transactions PostgreSQL streams while they are still in progress (PostgreSQL 14+ streaming of
//! large transactions, entered when a transaction outgrows `logical_decoding_work_mem`).
//!
//! The first streamed transaction with nothing of it seen yet is applied *directly*: its pieces
//! go into an open Turso transaction as PostgreSQL decodes them, so Turso works while PostgreSQL
//! is still reading the WAL, and the stream commit only sends the rest and COMMIT. Every piece is
//! also appended to a [`Spool`], because SQLite has one writer and PostgreSQL commits in its own
//! order: when another transaction commits first, a subtransaction of this one rolls back, or the
//! stream would idle (decoding has caught up with the WAL while the transaction is still running),
//! the Turso transaction is rolled back and the transaction is *demoted*: it goes on into its
//! spool only, and is applied from there when it commits, like any other transaction. A demoted
//! transaction never becomes direct again, so nothing is applied more than twice.
//!
//! Exactly once still holds: the progress row is written in the same Turso transaction as the
//! data, and a transaction at or below it is rolled back at its commit instead of committed.

use super::*;
use crate::apply::spool::Spool;
use serde::{Deserialize, Serialize};

/// A spooled piece of a streamed transaction (tables by index into [`Streamed::tables`]).
#[derive(Serialize)]
enum EntryRef<'a> {
    Change { table: u32, change: &'a RowChange },
    Truncate { tables: Vec<u32> },
}

/// [`EntryRef`] read back (same encoding).
#[derive(Deserialize)]
enum Entry {
    Change { table: u32, change: RowChange },
    Truncate { tables: Vec<u32> },
}

/// A transaction PostgreSQL is streaming.
pub(super) struct Streamed {
    xid: u32,
    /// Where it starts in the WAL: names it in messages until its commit LSN is known.
    first_lsn: u64,
    /// An initial copy already has it.
    skip: bool,
    /// Its changes are going into the open Turso transaction (`Replicator::txn`) too.
    direct: bool,
    spool: Option<Spool>,
    tables: Vec<Table>,
    /// Subtransactions in the order of their first change, with the spool's length and the
    /// change count just before it: everything after that belongs to the subtransaction or its
    /// children (a parent cannot write while a child is open), so rolling one back cuts there.
    subxacts: Vec<(u32, u64, u64, usize)>,
    changes: usize,
}

impl Streamed {
    fn table_index(&mut self, table: &Table) -> u32 {
        let sig = super::shape_signature(table);
        let found = self
            .tables
            .iter()
            .rposition(|t| t.source == table.source && t.shape.get() == Some(sig));
        let i = found.unwrap_or_else(|| {
            self.tables.push(table.clone());
            self.tables.len() - 1
        });
        i as u32
    }

    fn spool(&mut self, dir: &std::path::Path) -> Result<&mut Spool, PgTursoError> {
        if self.spool.is_none() {
            let spool = Spool::create(dir).map_err(|source| PgTursoError::Spool {
                xid: self.xid,
                source,
            })?;
            self.spool = Some(spool);
        }
        Ok(self.spool.as_mut().expect("just created"))
    }

    /// Appends one piece, first noting where subtransaction `sub` starts if this is its first.
    fn append(
        &mut self,
        dir: &std::path::Path,
        sub: u32,
        entry: &EntryRef,
    ) -> Result<(), PgTursoError> {
        let xid = self.xid;
        let changes = self.changes;
        let known = sub == xid || self.subxacts.iter().any(|s| s.0 == sub);
        let spool = self.spool(dir)?;
        let (len, entries) = (spool.len(), spool.entries());
        spool
            .append(entry)
            .map_err(|source| PgTursoError::Spool { xid, source })?;
        if !known {
            self.subxacts.push((sub, len, entries, changes));
        }
        self.changes += 1;
        Ok(())
    }
}

impl<T: Transport> Replicator<T> {
    fn streamed(&mut self, xid: u32) -> Option<&mut Streamed> {
        self.streams.iter_mut().find(|s| s.xid == xid)
    }

    /// The streamed transaction `xid` (PostgreSQL starts a stream before its changes), with the
    /// directory its spool goes to.
    fn streamed_and_dir(&mut self, xid: u32) -> (&mut Streamed, &std::path::Path) {
        let s = self
            .streams
            .iter_mut()
            .find(|s| s.xid == xid)
            .expect("PostgreSQL starts a stream before its changes");
        (s, &self.spool_dir)
    }

    /// A new piece of transaction `xid` (starting at `first_lsn`) is about to be streamed.
    pub fn stream_start(&mut self, xid: u32, first_lsn: u64) -> Result<(), PgTursoError> {
        if self.streamed(xid).is_none() {
            let skip = self.skip_snapshot.as_ref().is_some_and(|s| s.sees(xid));
            self.streams.push(Streamed {
                xid,
                first_lsn,
                skip,
                direct: false,
                spool: None,
                tables: Vec::new(),
                subxacts: Vec::new(),
                changes: 0,
            });
        }
        let other_direct = self.streams.iter().any(|s| s.direct && s.xid != xid);
        let s = self.streamed(xid).expect("just added");
        if s.direct {
            // sqld expires a stream after about 10 s without requests.
            let idle = self
                .txn
                .as_ref()
                .is_some_and(|t| t.last_sent.elapsed() >= self.limits.keep_alive);
            if idle {
                self.demote();
            }
            return Ok(());
        }
        if s.skip || s.changes > 0 || other_direct || self.txn.is_some() {
            return Ok(());
        }
        // Read the progress row now: once this transaction writes, Turso's single writer is
        // this stream, and the commit must not wait on a request of its own. A transaction that
        // may be in Turso already (the progress row is past its start: it is decoded again
        // because the slot did not advance) is never applied directly: whether Turso has it is
        // known only at its commit, and applying it onto its own earlier result can fail (a key
        // swap) or duplicate rows.
        let first_lsn = self.streamed(xid).expect("added above").first_lsn;
        if self.applied()?.is_some_and(|a| a >= first_lsn) {
            return Ok(());
        }
        let s = self.streamed(xid).expect("added above");
        s.direct = true;
        let lsn = s.first_lsn;
        self.start(lsn, true);
        self.txn.as_mut().expect("just started").skip = Some(false);
        Ok(())
    }

    /// One row change of subtransaction `sub` of the streamed transaction `xid`.
    pub fn stream_change(
        &mut self,
        xid: u32,
        sub: u32,
        table: &Table,
        change: RowChange,
    ) -> Result<(), PgTursoError> {
        let (s, dir) = self.streamed_and_dir(xid);
        if s.skip {
            return Ok(());
        }
        let index = s.table_index(table);
        s.append(
            dir,
            sub,
            &EntryRef::Change {
                table: index,
                change: &change,
            },
        )?;
        if s.direct {
            self.change(table, change)?;
        }
        Ok(())
    }

    /// TRUNCATE of `tables` (the replicated ones) in subtransaction `sub` of `xid`.
    pub fn stream_truncate(
        &mut self,
        xid: u32,
        sub: u32,
        tables: &[Table],
    ) -> Result<(), PgTursoError> {
        let (s, dir) = self.streamed_and_dir(xid);
        if s.skip || tables.is_empty() {
            return Ok(());
        }
        let indexes = tables.iter().map(|t| s.table_index(t)).collect();
        s.append(dir, sub, &EntryRef::Truncate { tables: indexes })?;
        if s.direct {
            self.truncate(tables)?;
        }
        Ok(())
    }

    /// The end of a streamed piece. `caught_up`: decoding has reached the end of the WAL while
    /// the transaction is still running, so the next piece may be long in coming; Turso's write
    /// lock is not held for that wait.
    pub fn stream_stop(&mut self, caught_up: bool) -> Result<(), PgTursoError> {
        if !self.streams.iter().any(|s| s.direct) {
            return Ok(());
        }
        if caught_up {
            self.demote();
            return Ok(());
        }
        // Let Turso work on what this piece left pending while PostgreSQL decodes the next one.
        if self.txn.as_ref().is_some_and(|t| t.pending_records > 0) {
            self.flush(false)?;
        }
        Ok(())
    }

    /// Rollback of the streamed transaction `xid`, or of its subtransaction `sub`.
    pub fn stream_abort(&mut self, xid: u32, sub: u32) -> Result<(), PgTursoError> {
        let Some(i) = self.streams.iter().position(|s| s.xid == xid) else {
            return Ok(());
        };
        if sub == xid {
            if self.streams.remove(i).direct {
                self.abandon();
            }
            return Ok(());
        }
        let s = &mut self.streams[i];
        let Some(p) = s.subxacts.iter().position(|x| x.0 == sub) else {
            // Nothing of it reached us: PostgreSQL drops what it has not streamed yet.
            return Ok(());
        };
        let (_, len, entries, changes) = s.subxacts[p];
        s.subxacts.truncate(p);
        s.changes = changes;
        let direct = s.direct;
        if let Some(spool) = s.spool.as_mut() {
            spool
                .truncate(len, entries)
                .map_err(|source| PgTursoError::Spool { xid, source })?;
        }
        if direct {
            self.demote();
        }
        Ok(())
    }

    /// COMMIT of the streamed transaction `xid` at `lsn`. Returns the output line when something
    /// was replicated.
    pub fn stream_commit(
        &mut self,
        xid: u32,
        lsn: u64,
        commit_time: Option<i64>,
    ) -> Result<Option<String>, PgTursoError> {
        let Some(i) = self.streams.iter().position(|s| s.xid == xid) else {
            return Ok(None);
        };
        let s = self.streams.remove(i);
        if s.skip || s.changes == 0 {
            if s.direct {
                self.abandon();
            }
            return Ok(None);
        }
        // A direct transaction whose first request Turso refused (its progress row was past the
        // transaction's start) is decided at its commit like a spooled one.
        if s.direct && self.txn.as_ref().is_some_and(|t| t.refused) {
            self.abandon();
        } else if s.direct {
            let txn = self
                .txn
                .as_mut()
                .expect("a direct transaction has a Turso one");
            txn.lsn = lsn;
            txn.xid = xid;
            txn.commit_time = commit_time;
            txn.skip = None;
            if self.should_skip()? {
                self.abandon();
                return Ok(None);
            }
            return self.commit();
        }
        // Like any transaction committing before one still being streamed (`begin` gives up that
        // one's Turso transaction); an initial copy's transactions were never spooled.
        self.begin_at(lsn, xid, commit_time)?;
        if self.should_skip()? {
            self.txn = None;
            return Ok(None);
        }
        let Streamed { spool, tables, .. } = s;
        let entries = spool
            .expect("a transaction with changes has a spool")
            .read::<Entry>()
            .map_err(|source| PgTursoError::Spool { xid, source })?;
        for entry in entries {
            match entry.map_err(|source| PgTursoError::Spool { xid, source })? {
                Entry::Change { table, change } => {
                    self.change(&tables[table as usize], change)?;
                }
                Entry::Truncate { tables: which } => {
                    let list: Vec<Table> =
                        which.iter().map(|&t| tables[t as usize].clone()).collect();
                    self.truncate(&list)?;
                }
            }
        }
        self.commit()
    }

    /// Rolls back the Turso transaction of the directly applied streamed transaction, if any;
    /// that transaction goes on in its spool only.
    pub(super) fn demote(&mut self) {
        let mut any = false;
        for s in self.streams.iter_mut().filter(|s| s.direct) {
            s.direct = false;
            any = true;
        }
        if any {
            self.abandon();
        }
    }

    /// Ends the decoding session, normally or by an error: an open Turso transaction (a streamed
    /// transaction's, or one that spans several requests and was cut short by an error) is
    /// rolled back now rather than left to expire, since it holds Turso's write lock until then.
    pub fn close(&mut self) {
        self.take_held();
        self.demote();
        self.abandon();
        self.streams.clear();
    }

    /// After an ERROR ends the decoding session: rolls back the open Turso transaction, if any,
    /// without waiting for a request in flight (it may hang: rolling back with the baton that
    /// request continues works as long as Turso has not seen it), so Turso's write lock is freed
    /// at once instead of when sqld expires the stream.
    pub fn abort(&mut self) {
        self.take_held();
        self.streams.clear();
        let Some(mut txn) = self.txn.take() else {
            return;
        };
        let stream = match txn.pending_request.take() {
            Some(p) => p.request.baton.map(|baton| Stream {
                baton,
                base_url: p.base,
            }),
            None => txn.stream.take(),
        };
        if let Some(stream) = stream {
            self.rollback_stream(stream);
        }
    }

    /// Rolls back and closes the current Turso transaction's stream (best effort, see
    /// [`Replicator::rollback_stream`]).
    fn abandon(&mut self) {
        let Some(mut txn) = self.txn.take() else {
            return;
        };
        let stream = match txn.pending_request.take() {
            // Its answer carries the baton the rollback needs.
            Some(p) => match self.transport.finish(p.in_flight) {
                Ok(resp) => resp.baton.map(|baton| Stream {
                    baton,
                    base_url: resp.base_url.or(p.base),
                }),
                Err(_) => None,
            },
            None => txn.stream.take(),
        };
        if let Some(stream) = stream {
            self.rollback_stream(stream);
        }
    }
}
