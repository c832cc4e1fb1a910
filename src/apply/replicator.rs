//! The replication core: turns decoded transactions into Turso transactions, exactly once.
//!
//! Each PostgreSQL transaction with replicated changes becomes one Turso transaction on one Hrana
//! stream. It is sent in pieces when it outgrows the request limits, and its last request also
//! upserts the progress row `(system_id, slot) -> commit LSN`. Transactions at or below the stored
//! LSN are skipped, so re-decoding after a failure never applies anything twice. Plain Rust: the
//! transport is a trait, so this is tested without a network. The progress row and its guard are
//! in `progress`, the Turso tables' bookkeeping in `schema`, reading Turso's answers in `response`,
//! group commit in `group`, streamed transactions in `streaming`.

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::error::PgTursoError;
use crate::model::{format_lsn, RowChange, Table, Value};
use crate::options::{Limits, SkipSnapshot};
use crate::turso::client::{ClientError, InFlight, Transport};
use crate::turso::hrana::{
    self, BatchPart, PipelineRequest, PipelineResponse, StreamRequest, StreamResponse, StreamResult,
};
use crate::turso::sql::{self, KnownTable, Stmt};

/// Name of the progress table in Turso.
pub const PROGRESS_TABLE: &str = "_pgturso_progress";
/// Name of the table in Turso that records the shape pgturso gave each replicated table.
pub const SCHEMA_TABLE: &str = "_pgturso_schema";

/// What Turso's progress row says of a slot: the commit LSN of the last transaction it has, and
/// that transaction's id and commit time (absent in rows written by pgturso before 0.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub lsn: u64,
    pub xid: Option<u32>,
    pub commit_time: Option<i64>,
}

/// Looks up the commit record at an LSN of this server's WAL: `Some((xid, commit time))` when
/// the WAL has a transaction's commit record exactly there, `None` otherwise (also when the LSN
/// is beyond the WAL's end). Given by the decoding layer.
pub type CommitAt = fn(u64) -> Option<(u32, i64)>;

/// Looks up a source table (`<database oid>.<table oid>`) in PostgreSQL's catalog as of the
/// change being decoded: `Some(Some(turso name))` when it exists, `Some(None)` when it does not
/// (dropped), `None` when this session cannot tell (another database). Given by the decoding
/// layer.
pub type SourceName = fn(&str) -> Option<Option<String>>;

/// Exponential backoff from 100 ms, capped at 2 s, with +-25% jitter.
fn backoff(attempt: u32) -> Duration {
    let base = 100u64.saturating_mul(1 << attempt.min(5)).min(2000);
    let jitter = RandomState::new().hash_one(attempt) % (base / 2 + 1);
    Duration::from_millis(base - base / 4 + jitter)
}

/// An open Hrana stream holding a Turso transaction across requests.
struct Stream {
    baton: String,
    base_url: Option<String>,
}

/// Consecutive row changes of one kind, table and column set, merged into one statement.
struct Group {
    table: Table,
    delete: bool,
    cols: Vec<usize>,
    rows: Vec<Vec<Value>>,
    /// The server reads rows from one JSON argument (see [`sql::rows_json`]).
    json: bool,
}

impl Group {
    fn accepts(&self, table: &Table, delete: bool, cols: &[usize], max_rows: usize) -> bool {
        // The shape (set by `ensure_table` before any row) names all the statement is made of.
        let same_table = self.table.shape.get().is_some() && self.table.shape == table.shape;
        self.delete == delete && self.rows.len() < max_rows && self.cols == cols && same_table
    }

    fn into_stmt(self) -> Stmt {
        match (self.delete, self.json && self.rows.len() > 1) {
            (true, true) => sql::delete_keys_json(&self.table, &self.rows),
            (true, false) => sql::delete_keys(&self.table, &self.rows),
            (false, true) => sql::upsert_rows_json(&self.table, &self.cols, &self.rows),
            (false, false) => sql::upsert_rows(&self.table, &self.cols, &self.rows),
        }
    }
}

/// A request of the transaction that is travelling while the next part is decoded.
struct Pending {
    in_flight: InFlight,
    request: PipelineRequest,
    layout: hrana::BatchLayout,
    sqls: Vec<String>,
    base: Option<String>,
    standalone: bool,
    /// Its first statement is the [`progress_guard`].
    guarded: bool,
}

/// The Turso side of the transaction being decoded.
struct Txn {
    lsn: u64,
    /// The LSN its first request is guarded with: its own, or in a group the first
    /// transaction's (see [`group`]).
    first_lsn: u64,
    /// The transaction's id and commit time, recorded with its progress.
    xid: u32,
    commit_time: Option<i64>,
    /// Decoded transactions record their LSN in the progress table; copies do not.
    tracked: bool,
    /// Already applied in Turso (at or below the progress LSN): decode, but send nothing.
    skip: Option<bool>,
    /// Turso refused the transaction's first request because its progress row had reached the
    /// transaction's LSN already (see [`progress_guard`]): nothing of it was sent.
    refused: bool,
    /// Changes replicated, the rows of table rewrites included.
    changes: usize,
    /// Rows of table rewrites (see [`RowChange::Rewrite`]) among `changes`.
    rewritten: usize,
    pending: Vec<Stmt>,
    pending_bytes: usize,
    /// Records (rows and statements) in `pending`, `group` and `window`.
    pending_records: usize,
    group: Option<Group>,
    /// Row changes by key not yet in `group` (see [`collapse`]).
    window: collapse::Window,
    stream: Option<Stream>,
    /// At most one request in flight; it must be answered before the next one (its baton).
    pending_request: Option<Pending>,
    /// When the last request of this transaction's stream was sent.
    last_sent: Instant,
    /// (source table, shape) created or altered by this transaction, remembered once it commits.
    created: Vec<(String, String)>,
    known: Vec<(String, KnownTable)>,
    /// (source table, rewrite) of the table rewrites this transaction has started replacing a
    /// Turso table with (see [`RowChange::Rewrite`]).
    rewrites: Vec<(String, u32)>,
    /// Source tables gone from PostgreSQL whose Turso table this transaction dropped, for a
    /// table that took their name over.
    dropped: Vec<String>,
}

/// Per-decoding-session replication state.
pub struct Replicator<T: Transport> {
    transport: T,
    system_id: String,
    slot: String,
    limits: Limits,
    applied_lsn: Option<Option<u64>>,
    /// The slot's confirmed position when the session started, and how to look up this
    /// server's commit records: a progress row at or past that position must name a
    /// transaction this WAL has (see [`Replicator::with_history`]).
    history: Option<(u64, CommitAt)>,
    /// Looks up a source table in PostgreSQL (see [`SourceName`]).
    source_name: Option<SourceName>,
    /// The shape each source table has in Turso, as far as this session made sure of it.
    ensured: HashMap<String, String>,
    /// Table shapes in Turso by source table (`_pgturso_schema`), read once per session.
    known: Option<HashMap<String, KnownTable>>,
    /// Transactions this snapshot sees are in an initial copy already.
    skip_snapshot: Option<SkipSnapshot>,
    /// The server answered [`sql::JSON_ROWS_PROBE`]: multi-row statements take JSON rows.
    json_rows: bool,
    txn: Option<Txn>,
    /// Transactions PostgreSQL is streaming while they are in progress (see [`streaming`]).
    streams: Vec<streaming::Streamed>,
    /// Where streamed transactions are spooled.
    spool_dir: PathBuf,
    /// Group commit (see [`group`]): the Turso transaction of decoded transactions that have
    /// committed in PostgreSQL but not yet in Turso, and the progress of the last of them.
    grouping: bool,
    held: Option<Txn>,
    held_progress: Option<Progress>,
    /// A group open this long is committed at the next source commit (see [`group`]).
    group_max_age: Duration,
    /// When the held group's first transaction was held.
    group_started: Option<Instant>,
}

impl<T: Transport> Replicator<T> {
    pub fn new(transport: T, system_id: String, slot: String, limits: Limits) -> Self {
        Replicator {
            transport,
            system_id,
            slot,
            limits,
            applied_lsn: None,
            history: None,
            source_name: None,
            ensured: HashMap::new(),
            known: None,
            skip_snapshot: None,
            json_rows: false,
            txn: None,
            streams: Vec::new(),
            spool_dir: std::env::temp_dir(),
            grouping: false,
            held: None,
            held_progress: None,
            group_max_age: group::DEFAULT_MAX_AGE,
            group_started: None,
        }
    }

    /// Spools streamed transactions in `dir`.
    pub fn with_spool_dir(mut self, dir: PathBuf) -> Self {
        self.spool_dir = dir;
        self
    }

    /// Checks the progress row against this server's WAL before anything is skipped by it:
    /// decoding starts at the slot's `confirmed` position, and a progress row at or past it is
    /// trusted only if `commit_at` finds that very transaction (same LSN, xid and commit time)
    /// in the WAL. Otherwise Turso holds transactions this PostgreSQL never had (a restore from a
    /// backup, a slot created again), and skipping by LSN would lose new ones: an error instead.
    pub fn with_history(mut self, confirmed: u64, commit_at: CommitAt) -> Self {
        self.history = Some((confirmed, commit_at));
        self
    }

    /// Looks source tables up with `f`, so that a table can take over the Turso name of one
    /// that was dropped or renamed in PostgreSQL.
    pub fn with_source_name(mut self, f: SourceName) -> Self {
        self.source_name = Some(f);
        self
    }

    /// What a committed transaction did to Turso's tables, remembered for the session.
    fn remember(
        &mut self,
        created: Vec<(String, String)>,
        known: Vec<(String, KnownTable)>,
        dropped: Vec<String>,
    ) {
        self.ensured.extend(created);
        if let Some(k) = self.known.as_mut() {
            k.extend(known);
        }
        for source in dropped {
            self.ensured.remove(&source);
            if let Some(k) = self.known.as_mut() {
                k.remove(&source);
            }
        }
    }

    /// Skips the decoded transactions that `snapshot` (an initial copy's) sees.
    pub fn with_skip_snapshot(mut self, snapshot: Option<SkipSnapshot>) -> Self {
        self.skip_snapshot = snapshot;
        self
    }

    /// BEGIN of the decoded transaction `xid` whose commit record is at `lsn`. It commits before
    /// any transaction being streamed, so a Turso transaction open for one of those is given up
    /// first (that one is applied from its spool when it commits).
    pub fn begin(&mut self, lsn: u64, xid: u32) -> Result<(), PgTursoError> {
        self.begin_at(lsn, xid, None)
    }

    /// [`Replicator::begin`] with the transaction's commit time, recorded in the progress row
    /// so that a later session can tell this transaction from another at the same LSN.
    pub fn begin_at(
        &mut self,
        lsn: u64,
        xid: u32,
        commit_time: Option<i64>,
    ) -> Result<(), PgTursoError> {
        self.demote();
        self.start(lsn, true);
        let txn = self.txn.as_mut().expect("just started");
        txn.xid = xid;
        txn.commit_time = commit_time;
        if self.skip_snapshot.as_ref().is_some_and(|s| s.sees(xid)) {
            self.txn.as_mut().expect("just started").skip = Some(true);
        }
        Ok(())
    }

    /// BEGIN of a Turso transaction that is not a decoded one (an initial copy, a view sync):
    /// nothing is skipped and no progress is recorded.
    pub fn begin_untracked(&mut self) {
        self.start(0, false);
    }

    /// In an untracked transaction (an initial copy for a new slot): deletes `slot`'s progress
    /// row when the transaction commits, so that the new slot's history starts with the copy and
    /// a row left by an earlier slot of that name (or by this server before a restore) is not
    /// read as progress of the new one.
    pub fn reset_progress(&mut self, slot: &str) -> Result<(), PgTursoError> {
        for stmt in progress_reset(&self.system_id, slot) {
            self.push(stmt)?;
        }
        Ok(())
    }

    fn start(&mut self, lsn: u64, tracked: bool) {
        if let Some(held) = self.held.take() {
            self.txn = Some(group::continued(held, lsn));
            return;
        }
        self.txn = Some(Txn {
            lsn,
            first_lsn: lsn,
            xid: 0,
            commit_time: None,
            tracked,
            skip: if tracked { None } else { Some(false) },
            refused: false,
            changes: 0,
            rewritten: 0,
            pending: Vec::new(),
            pending_bytes: 0,
            pending_records: 0,
            group: None,
            window: collapse::Window::default(),
            stream: None,
            pending_request: None,
            last_sent: Instant::now(),
            created: Vec::new(),
            known: Vec::new(),
            rewrites: Vec::new(),
            dropped: Vec::new(),
        });
    }

    /// A read-only request, retried on transient failures.
    fn retrying<R>(
        &mut self,
        read: impl Fn(&mut Self) -> Result<R, ClientError>,
    ) -> Result<R, ClientError> {
        let deadline = Instant::now() + self.limits.retry_for;
        let mut attempt = 0;
        loop {
            match read(self) {
                Err(e) if e.is_retryable() && Instant::now() < deadline => {
                    self.transport.pause(backoff(attempt));
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// Creates a bookkeeping table if missing and runs one SELECT on it, in one request, which
    /// also probes whether the server takes JSON rows ([`sql::JSON_ROWS_PROBE`]).
    fn read_bookkeeping(
        &mut self,
        ddl: String,
        select: String,
        args: Vec<Value>,
        what: &str,
    ) -> Result<hrana::StmtResult, ClientError> {
        let req = PipelineRequest {
            baton: None,
            requests: vec![
                hrana::query(&ddl, vec![]),
                hrana::query(&select, args),
                hrana::query(sql::JSON_ROWS_PROBE, vec![]),
                StreamRequest::Close,
            ],
        };
        let resp = self.transport.pipeline(None, &req)?;
        self.json_rows = matches!(resp.results.get(2), Some(StreamResult::Ok { .. }));
        let mut last = None;
        for r in resp.results.into_iter().take(2) {
            match r {
                StreamResult::Ok {
                    response: StreamResponse::Execute { result },
                } => last = Some(result),
                StreamResult::Ok { .. } => last = None,
                StreamResult::Error { error } => {
                    return Err(ClientError::Stream {
                        message: error.message,
                        code: error.code,
                    })
                }
            }
        }
        last.ok_or_else(|| ClientError::Protocol(format!("missing result for the {what} query")))
    }

    /// Adds one row change of `table`; returns false when the transaction is skipped.
    pub fn change(&mut self, table: &Table, change: RowChange) -> Result<bool, PgTursoError> {
        if self.should_skip()? {
            return Ok(false);
        }
        let rewrite = match &change {
            RowChange::Rewrite { rewrite, .. } => Some(*rewrite),
            _ => None,
        };
        if rewrite.is_some() {
            self.txn.as_mut().expect("inside a transaction").rewritten += 1;
        }
        let op = sql::row_op(table, change)?;
        self.ensure_table(table, rewrite)?;
        match op {
            sql::Op::Upsert { cols, values } => self.push_row(table, false, cols, values)?,
            sql::Op::DeleteKey { key } => {
                let cols = table.key.clone();
                self.push_row(table, true, cols, key)?
            }
            sql::Op::Single(stmt) => self.push(stmt)?,
        }
        self.txn.as_mut().expect("inside a transaction").changes += 1;
        Ok(true)
    }

    /// Keeps the transaction's Turso stream open while decoding sends nothing to it (changes of
    /// tables that `table_name` filters out, say): when the stream has had no request for
    /// `limits.keep_alive`, what is pending (possibly nothing) is sent on it. Cheap otherwise.
    pub fn keep_alive(&mut self) -> Result<(), PgTursoError> {
        let Some(txn) = self.txn.as_ref() else {
            return Ok(());
        };
        if (txn.stream.is_none() && txn.pending_request.is_none())
            || txn.last_sent.elapsed() < self.limits.keep_alive
        {
            return Ok(());
        }
        self.flush(false)
    }

    /// DROP TABLE in PostgreSQL of source table `source`: its Turso table is dropped and
    /// forgotten, in this transaction, when pgturso replicated it into this Turso database (and,
    /// given `only`, under that Turso name). Returns whether anything was sent.
    pub fn drop_source(&mut self, source: &str, only: Option<&str>) -> Result<bool, PgTursoError> {
        if self.should_skip()? {
            return Ok(false);
        }
        self.load_known()?;
        let Some(k) = self
            .latest_known(source)
            .filter(|k| only.is_none_or(|n| k.turso_name == n))
        else {
            return Ok(false);
        };
        self.push(sql::drop_table(&k.turso_name))?;
        self.push(schema::schema_delete(&self.system_id, source))?;
        let txn = self.txn.as_mut().expect("inside a transaction");
        txn.dropped.push(source.to_string());
        txn.changes += 1;
        Ok(true)
    }

    /// TRUNCATE of the given replicated tables.
    pub fn truncate(&mut self, tables: &[Table]) -> Result<bool, PgTursoError> {
        if tables.is_empty() || self.should_skip()? {
            return Ok(false);
        }
        for table in tables {
            self.ensure_table(table, None)?;
            self.push(sql::truncate(table))?;
        }
        self.txn.as_mut().expect("inside a transaction").changes += 1;
        Ok(true)
    }

    /// Flushes first when adding `size` bytes would overflow the request limits.
    fn make_room(&mut self, size: usize) -> Result<(), PgTursoError> {
        let txn = self.txn.as_ref().expect("inside a transaction");
        if txn.pending_records > 0
            && (txn.pending_records >= self.limits.max_records
                || txn.pending_bytes + size > self.limits.max_bytes)
        {
            self.flush(false)?;
        }
        Ok(())
    }

    /// Adds a statement of its own, after the rows grouped so far.
    fn push(&mut self, stmt: Stmt) -> Result<(), PgTursoError> {
        let size = stmt.estimated_size();
        self.make_room(size)?;
        self.close_group();
        let txn = self.txn.as_mut().expect("inside a transaction");
        txn.pending_bytes += size;
        txn.pending_records += 1;
        txn.pending.push(stmt);
        Ok(())
    }

    /// Adds one row change by key; successive changes of one row collapse (see [`collapse`]).
    fn push_row(
        &mut self,
        table: &Table,
        delete: bool,
        cols: Vec<usize>,
        values: Vec<Value>,
    ) -> Result<(), PgTursoError> {
        let size = 8 + values.iter().map(Value::estimated_size).sum::<usize>();
        self.make_room(size)?;
        let op = if delete {
            collapse::RowOp::Delete { key: values }
        } else {
            collapse::RowOp::Upsert { cols, values }
        };
        let txn = self.txn.as_mut().expect("inside a transaction");
        txn.pending_bytes += size;
        let new_row = match txn.window.add(table, op) {
            Ok(new_row) => new_row,
            Err(op) => {
                self.close_group();
                let txn = self.txn.as_mut().expect("inside a transaction");
                txn.window
                    .add(table, op)
                    .expect("an empty window takes any row")
            }
        };
        if new_row {
            self.txn
                .as_mut()
                .expect("inside a transaction")
                .pending_records += 1;
        }
        Ok(())
    }

    /// Turns the rows of the window into multi-row statements, and those into pending
    /// statements: what comes next is applied after them.
    fn close_group(&mut self) {
        let json = self.json_rows;
        let max_records = self.limits.max_records;
        let txn = self.txn.as_mut().expect("inside a transaction");
        for (table, ops) in txn.window.drain() {
            for op in ops {
                let (delete, cols, values) = match op {
                    collapse::RowOp::Upsert { cols, values } => (false, Cow::Owned(cols), values),
                    collapse::RowOp::Delete { key } => (true, Cow::Borrowed(&table.key[..]), key),
                };
                let max_rows = if json {
                    max_records
                } else {
                    max_records.min(sql::MAX_PARAMS / cols.len().max(1))
                };
                // The window holds each key once, so the rows of one statement never depend on
                // the order the server applies them in (see [`sql::upsert_rows_json`]).
                match &mut txn.group {
                    Some(g) if g.accepts(&table, delete, &cols, max_rows) => {
                        g.rows.push(values);
                    }
                    _ => {
                        if let Some(g) = txn.group.take() {
                            txn.pending.push(g.into_stmt());
                        }
                        txn.group = Some(Group {
                            table: table.clone(),
                            delete,
                            cols: cols.into_owned(),
                            rows: vec![values],
                            json,
                        });
                    }
                }
            }
        }
        if let Some(g) = txn.group.take() {
            txn.pending.push(g.into_stmt());
        }
    }

    /// Waits for the request in flight, if any, and continues the stream it answered. Returns
    /// false when Turso refused the request because it has the transaction already (see
    /// [`progress_guard`]): the transaction is then marked refused and its stream rolled back.
    fn settle(&mut self) -> Result<bool, PgTursoError> {
        let txn = self.txn.as_mut().expect("inside a transaction");
        let Some(p) = txn.pending_request.take() else {
            return Ok(true);
        };
        let (lsn, tracked) = (txn.lsn, txn.tracked);
        // Until the answer is in, the stream is the one the request continues: if waiting for
        // it raises (a cancel), [`Replicator::abort`] rolls that stream back with this baton.
        txn.stream = p.request.baton.clone().map(|baton| Stream {
            baton,
            base_url: p.base.clone(),
        });
        let wrap = |source| wrap_error(tracked, lsn, source);
        let resp = match self.transport.finish(p.in_flight) {
            Ok(resp) if !(p.standalone && busy(&resp)) => resp,
            // It carries no COMMIT: resending follows the same rules as a first attempt.
            done => {
                let failed = Some(done.err().unwrap_or(ClientError::Busy));
                // On an error the stream set above stays, for [`Replicator::abort`]: if Turso
                // never saw the request, its baton still rolls the stream back.
                self.send(p.base.as_deref(), &p.request, p.standalone, failed)
                    .map_err(wrap)?
            }
        };
        if p.guarded && guard_refused(&resp, &p.layout) {
            let stream = resp.baton.map(|baton| Stream {
                baton,
                base_url: resp.base_url.or(p.base),
            });
            self.refuse(stream);
            return Ok(false);
        }
        // A failed step leaves the stream open: keep it for [`Replicator::abort`].
        let open = resp.baton.clone().map(|baton| Stream {
            baton,
            base_url: resp.base_url.clone().or(p.base.clone()),
        });
        let next = check_batch(resp, &p.layout, &p.sqls, false);
        let txn = self.txn.as_mut().expect("inside a transaction");
        match next {
            Ok(next) => {
                txn.stream = next.map(|(baton, base_url)| Stream {
                    baton,
                    base_url: base_url.or(p.base),
                });
                Ok(true)
            }
            Err(e) => {
                txn.stream = open;
                Err(wrap(e))
            }
        }
    }

    /// Turso has the current transaction already: nothing more of it is sent, and the stream its
    /// refused first request opened (if any) is rolled back at once, releasing Turso's write lock.
    fn refuse(&mut self, stream: Option<Stream>) {
        let txn = self.txn.as_mut().expect("inside a transaction");
        txn.refused = true;
        txn.skip = Some(true);
        txn.pending.clear();
        txn.group = None;
        txn.window = collapse::Window::default();
        txn.pending_bytes = 0;
        txn.pending_records = 0;
        txn.stream = None;
        if let Some(stream) = stream {
            self.rollback_stream(stream);
        }
    }

    /// Rolls back and closes `stream`. Best effort: if this fails, sqld rolls the stream back
    /// when it expires.
    fn rollback_stream(&mut self, stream: Stream) {
        let req = PipelineRequest {
            baton: Some(stream.baton),
            requests: vec![hrana::query("ROLLBACK", vec![]), StreamRequest::Close],
        };
        let _ = self.transport.pipeline(stream.base_url.as_deref(), &req);
    }

    /// Sends the pending statements; `commit` adds the progress row and COMMIT and closes the
    /// stream and waits for Turso's answer; otherwise the request travels while decoding goes on.
    /// The request is built before waiting for the one in flight, so Turso, which is usually
    /// the slower side, gets the next request as soon as it has answered the previous one.
    ///
    /// The first request of a decoded transaction starts with the [`progress_guard`], so Turso
    /// itself refuses a transaction it has already, whenever and however often a request of it
    /// arrives.
    fn flush(&mut self, commit: bool) -> Result<(), PgTursoError> {
        self.close_group();
        let txn = self.txn.as_mut().expect("inside a transaction");
        let lsn = txn.lsn;
        let mut stmts = std::mem::take(&mut txn.pending);
        txn.pending_bytes = 0;
        txn.pending_records = 0;
        // A request in flight always leaves the stream open (or `settle` fails): no BEGIN then.
        let begin = txn.stream.is_none() && txn.pending_request.is_none();
        let guarded = begin && txn.tracked;
        if guarded {
            stmts.insert(
                0,
                progress_guard(&self.system_id, &self.slot, txn.first_lsn),
            );
        }
        if commit && txn.tracked {
            let p = Progress {
                lsn,
                xid: Some(txn.xid),
                commit_time: txn.commit_time,
            };
            stmts.push(progress_upsert(&self.system_id, &self.slot, &p));
        }
        let sqls: Vec<String> = stmts.iter().map(|s| s.sql.clone()).collect();
        let part = BatchPart { begin, commit };
        let (batch, layout) = hrana::transaction_batch(stmts, part);
        let mut requests = vec![batch];
        if commit {
            requests.push(StreamRequest::Close);
        }
        if !self.settle()? {
            return Ok(());
        }
        let txn = self.txn.as_mut().expect("inside a transaction");
        let stream = txn.stream.take();
        if part.begin != stream.is_none() {
            return Err(wrap_error(
                txn.tracked,
                lsn,
                ClientError::Protocol("the transaction's stream was lost between requests".into()),
            ));
        }
        let req = PipelineRequest {
            baton: stream.as_ref().map(|s| s.baton.clone()),
            requests,
        };
        let base = stream.as_ref().and_then(|s| s.base_url.clone());
        let standalone = stream.is_none();
        let tracked = txn.tracked;
        txn.last_sent = Instant::now();
        if !commit {
            let in_flight = self.transport.start(base.as_deref(), &req);
            self.txn
                .as_mut()
                .expect("inside a transaction")
                .pending_request = Some(Pending {
                in_flight,
                request: req,
                layout,
                sqls,
                base,
                standalone,
                guarded,
            });
            return Ok(());
        }
        let wrap = |source| wrap_error(tracked, lsn, source);
        let resp = self
            .send(base.as_deref(), &req, standalone, None)
            .map_err(wrap)?;
        if guarded && guard_refused(&resp, &layout) {
            // Turso has this transaction already (an earlier attempt of this very request landed
            // after all); the batch rolled itself back and the stream is closed.
            self.refuse(None);
            return Ok(());
        }
        let next = check_batch(resp, &layout, &sqls, commit).map_err(wrap)?;
        self.txn.as_mut().expect("inside a transaction").stream =
            next.map(|(baton, base_url)| Stream {
                baton,
                base_url: base_url.or(base),
            });
        Ok(())
    }

    /// Sends `req`, retrying transient failures for `limits.retry_for`. A request that was never
    /// sent is always resent. One whose outcome is unknown is resent only if it stands alone (no
    /// open stream): it then begins its own Turso transaction, and if it is a decoded
    /// transaction's, its [`progress_guard`] makes any attempt after the first that landed a
    /// no-op, in whatever order the attempts arrive. An answer whose batch failed on SQLite's
    /// busy lock is retried the same way: the batch rolled itself back.
    /// `failed` is the error of a first attempt already made (a request sent in the background).
    fn send(
        &mut self,
        base: Option<&str>,
        req: &PipelineRequest,
        standalone: bool,
        mut failed: Option<ClientError>,
    ) -> Result<PipelineResponse, ClientError> {
        let deadline = Instant::now() + self.limits.retry_for;
        let mut attempt = 0;
        loop {
            let err = match failed.take() {
                Some(e) => e,
                None => match self.transport.pipeline(base, req) {
                    Ok(resp) if standalone && busy(&resp) => ClientError::Busy,
                    Ok(resp) => return Ok(resp),
                    Err(e) => e,
                },
            };
            let not_sent = matches!(err, ClientError::Connect { .. });
            if !err.is_retryable() || !(standalone || not_sent) || Instant::now() >= deadline {
                return Err(err);
            }
            self.transport.pause(backoff(attempt));
            attempt += 1;
            if Instant::now() >= deadline {
                return Err(err);
            }
        }
    }

    /// COMMIT of the decoded transaction. Returns the output line when something was replicated.
    pub fn commit(&mut self) -> Result<Option<String>, PgTursoError> {
        let Some(txn) = self.txn.as_ref() else {
            return Ok(None);
        };
        if self.grouping && txn.tracked {
            return self.hold();
        }
        if txn.changes == 0 || txn.skip == Some(true) {
            self.txn = None;
            return Ok(None);
        }
        let (lsn, changes, rewritten) = (txn.lsn, txn.changes, txn.rewritten);
        self.flush(true)?;
        let txn = self.txn.take().expect("inside a transaction");
        self.remember(txn.created, txn.known, txn.dropped);
        if txn.tracked {
            self.applied_lsn = Some(Some(lsn));
        }
        Ok(Some(commit_line(lsn, changes, rewritten)))
    }
}

/// The output line of a replicated transaction.
/// The output line of a replicated transaction: its row changes, and the rows of the table
/// rewrites it carried (`COMMIT 0/16B3748: 1 change, 5000 rows rewritten`).
fn commit_line(lsn: u64, changes: usize, rewritten: usize) -> String {
    let rows = changes - rewritten;
    let mut line = format!(
        "COMMIT {}: {rows} change{}",
        format_lsn(lsn),
        if rows == 1 { "" } else { "s" }
    );
    if rewritten > 0 {
        line.push_str(&format!(
            ", {rewritten} row{} rewritten",
            if rewritten == 1 { "" } else { "s" }
        ));
    }
    line
}

/// A transport error of a decoded transaction (named by its LSN) or of a copy.
fn wrap_error(tracked: bool, lsn: u64, source: ClientError) -> PgTursoError {
    if tracked {
        PgTursoError::Replication {
            lsn: format_lsn(lsn),
            source,
        }
    } else {
        PgTursoError::Copy { source }
    }
}

mod collapse;
mod group;
mod progress;
mod response;
mod schema;
mod streaming;

use progress::*;
use response::*;
use schema::*;
#[cfg(test)]
mod tests;
