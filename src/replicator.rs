//! The replication core: turns decoded transactions into Turso transactions, exactly once.
//!
//! Each PostgreSQL transaction with replicated changes becomes one Turso transaction on one Hrana
//! stream. It is sent in pieces when it outgrows the request limits, and its last request also
//! upserts the progress row `(system_id, slot) -> commit LSN`. Transactions at or below the stored
//! LSN are skipped, so re-decoding after a failure never applies anything twice. Plain Rust: the
//! transport is a trait, so this is tested without a network.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, DefaultHasher, Hash, Hasher, RandomState};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::client::{ClientError, InFlight, Transport};
use crate::error::PgTursoError;
use crate::hrana::{
    self, BatchPart, PipelineRequest, PipelineResponse, StreamRequest, StreamResponse, StreamResult,
};
use crate::model::{format_lsn, RowChange, Table, Value};
use crate::options::SkipSnapshot;
use crate::sql::{self, KnownTable, Stmt};

/// Name of the progress table in Turso.
pub const PROGRESS_TABLE: &str = "_pgturso_progress";
/// Name of the table in Turso that records the shape pgturso gave each replicated table.
pub const SCHEMA_TABLE: &str = "_pgturso_schema";

/// Limits on one request of a transaction (larger transactions span several requests), and how
/// long transient failures are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_records: usize,
    pub max_bytes: usize,
    /// Total time spent retrying one request; zero disables retries.
    pub retry_for: Duration,
    /// An open stream that has had no request for this long gets one (see
    /// [`Replicator::keep_alive`]): sqld expires a stream after about 10 s without requests.
    pub keep_alive: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_records: 2000,
            max_bytes: 5 * 1024 * 1024,
            retry_for: Duration::from_secs(10),
            keep_alive: Duration::from_secs(5),
        }
    }
}

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
    /// Hashes of the keys of an upsert group's rows: a key that comes again (an INSERT and then
    /// an UPDATE of the same row) starts a new statement, so the rows of one statement never
    /// depend on the order the server applies them in (see [`sql::upsert_rows_json`]).
    keys: HashSet<u64>,
}

impl Group {
    fn accepts(
        &self,
        table: &Table,
        delete: bool,
        cols: &[usize],
        max_rows: usize,
        key: Option<u64>,
    ) -> bool {
        // The shape (set by `ensure_table` before any row) names all the statement is made of.
        let same_table = self.table.shape.get().is_some() && self.table.shape == table.shape;
        self.delete == delete
            && self.rows.len() < max_rows
            && self.cols == cols
            && same_table
            && key.is_none_or(|k| !self.keys.contains(&k))
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
}

/// The Turso side of the transaction being decoded.
struct Txn {
    lsn: u64,
    /// Decoded transactions record their LSN in the progress table; copies do not.
    tracked: bool,
    /// Already applied in Turso (at or below the progress LSN): decode, but send nothing.
    skip: Option<bool>,
    changes: usize,
    pending: Vec<Stmt>,
    pending_bytes: usize,
    /// Records (rows and statements) in `pending` and `group`.
    pending_records: usize,
    group: Option<Group>,
    stream: Option<Stream>,
    /// At most one request in flight; it must be answered before the next one (its baton).
    pending_request: Option<Pending>,
    /// When the last request of this transaction's stream was sent.
    last_sent: Instant,
    /// (source table, shape) created or altered by this transaction, remembered once it commits.
    created: Vec<(String, String)>,
    known: Vec<(String, KnownTable)>,
}

/// Per-decoding-session replication state.
pub struct Replicator<T: Transport> {
    transport: T,
    system_id: String,
    slot: String,
    limits: Limits,
    applied_lsn: Option<Option<u64>>,
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
}

impl<T: Transport> Replicator<T> {
    pub fn new(transport: T, system_id: String, slot: String, limits: Limits) -> Self {
        Replicator {
            transport,
            system_id,
            slot,
            limits,
            applied_lsn: None,
            ensured: HashMap::new(),
            known: None,
            skip_snapshot: None,
            json_rows: false,
            txn: None,
            streams: Vec::new(),
            spool_dir: std::env::temp_dir(),
        }
    }

    /// Spools streamed transactions in `dir`.
    pub fn with_spool_dir(mut self, dir: PathBuf) -> Self {
        self.spool_dir = dir;
        self
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
        self.demote();
        self.start(lsn, true);
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

    fn start(&mut self, lsn: u64, tracked: bool) {
        self.txn = Some(Txn {
            lsn,
            tracked,
            skip: if tracked { None } else { Some(false) },
            changes: 0,
            pending: Vec::new(),
            pending_bytes: 0,
            pending_records: 0,
            group: None,
            stream: None,
            pending_request: None,
            last_sent: Instant::now(),
            created: Vec::new(),
            known: Vec::new(),
        });
    }

    /// Whether the current transaction is already in Turso (reads the progress row once).
    fn should_skip(&mut self) -> Result<bool, PgTursoError> {
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
    fn applied(&mut self) -> Result<Option<u64>, PgTursoError> {
        if let Some(a) = self.applied_lsn {
            return Ok(a);
        }
        let a = self
            .retrying(Self::read_progress)
            .map_err(|source| PgTursoError::Progress {
                slot: self.slot.clone(),
                source,
            })?;
        self.applied_lsn = Some(a);
        Ok(a)
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

    fn read_progress(&mut self) -> Result<Option<u64>, ClientError> {
        let result = self.read_bookkeeping(
            progress_ddl(),
            format!(
                "SELECT \"lsn\" FROM {} WHERE \"system_id\" = ? AND \"slot\" = ?",
                sql::quote_ident(PROGRESS_TABLE)
            ),
            vec![
                Value::Text(self.system_id.clone()),
                Value::Text(self.slot.clone()),
            ],
            "progress",
        )?;
        match result.rows.first().and_then(|row| row.first()) {
            None => Ok(None),
            Some(v) => v
                .as_i64()
                .map(|l| Some(l as u64))
                .ok_or_else(|| ClientError::Protocol(format!("unexpected progress value {v:?}"))),
        }
    }

    /// Adds one row change of `table`; returns false when the transaction is skipped.
    pub fn change(&mut self, table: &Table, change: RowChange) -> Result<bool, PgTursoError> {
        if self.should_skip()? {
            return Ok(false);
        }
        let op = sql::row_op(table, change)?;
        self.ensure_table(table)?;
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

    /// TRUNCATE of the given replicated tables.
    pub fn truncate(&mut self, tables: &[Table]) -> Result<bool, PgTursoError> {
        if tables.is_empty() || self.should_skip()? {
            return Ok(false);
        }
        for table in tables {
            self.ensure_table(table)?;
            self.push(sql::truncate(table))?;
        }
        self.txn.as_mut().expect("inside a transaction").changes += 1;
        Ok(true)
    }

    /// Makes sure the Turso table exists with `table`'s shape before its data: created when new,
    /// altered (in this same Turso transaction) when the PostgreSQL table changed.
    fn ensure_table(&mut self, table: &Table) -> Result<(), PgTursoError> {
        let sig = shape_signature(table);
        let txn = self.txn.as_ref().expect("inside a transaction");
        // The table's latest shape, in this transaction or before: a table can go back to an
        // earlier shape (a column renamed back), which then needs ALTERs again.
        let latest = txn
            .created
            .iter()
            .rev()
            .find(|(source, _)| *source == table.source)
            .map(|(_, sig)| sig)
            .or_else(|| self.ensured.get(&table.source));
        if latest == Some(sig) {
            return Ok(());
        }
        let sig = sig.clone();
        let wanted = KnownTable::of(table);
        if self.known.is_none() {
            let loaded =
                self.retrying(Self::read_known)
                    .map_err(|source| PgTursoError::Progress {
                        slot: self.slot.clone(),
                        source,
                    })?;
            self.known = Some(loaded);
        }
        let txn = self.txn.as_ref().expect("inside a transaction");
        // Two PostgreSQL tables must never share one Turso table (SQLite ignores case in names).
        let lower = table.turso_name.to_lowercase();
        let taken = txn
            .known
            .iter()
            .map(|(s, k)| (s, k))
            .chain(self.known.iter().flatten())
            .any(|(source, k)| *source != table.source && k.turso_name.to_lowercase() == lower);
        if taken {
            return Err(PgTursoError::NameConflict {
                table: table.display_name(),
                turso: table.turso_name.clone(),
            });
        }
        let current = txn
            .known
            .iter()
            .rev()
            .find(|(s, _)| *s == table.source)
            .map(|(_, k)| k)
            .or_else(|| self.known.as_ref().and_then(|k| k.get(&table.source)))
            .cloned();
        let mut stmts = match &current {
            Some(k) if *k != wanted => sql::alter_table(k, table)?,
            // Also when known: recreates a table dropped in Turso by hand.
            _ => vec![sql::create_table(table)],
        };
        if current.as_ref() != Some(&wanted) {
            stmts.push(schema_upsert(&self.system_id, &table.source, &wanted));
        }
        let txn = self.txn.as_mut().expect("inside a transaction");
        txn.created.push((table.source.clone(), sig));
        txn.known.push((table.source.clone(), wanted));
        for stmt in stmts {
            self.push(stmt)?;
        }
        Ok(())
    }

    fn read_known(&mut self) -> Result<HashMap<String, KnownTable>, ClientError> {
        let result = self.read_bookkeeping(
            schema_ddl(),
            format!(
                "SELECT \"source\", \"definition\" FROM {} WHERE \"system_id\" = ?",
                sql::quote_ident(SCHEMA_TABLE)
            ),
            vec![Value::Text(self.system_id.clone())],
            "schema",
        )?;
        let mut out = HashMap::new();
        for row in result.rows {
            if let [hrana::WireValue::Text { value: source }, hrana::WireValue::Text { value: def }] =
                row.as_slice()
            {
                let known = serde_json::from_str(def).map_err(|e| {
                    ClientError::Protocol(format!(
                        "unreadable {SCHEMA_TABLE} row for {source}: {e}"
                    ))
                })?;
                out.insert(source.clone(), known);
            }
        }
        Ok(out)
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
        let txn = self.txn.as_mut().expect("inside a transaction");
        close_group(txn);
        txn.pending_bytes += size;
        txn.pending_records += 1;
        txn.pending.push(stmt);
        Ok(())
    }

    /// Adds one row to the current multi-row statement, or starts a new one.
    fn push_row(
        &mut self,
        table: &Table,
        delete: bool,
        cols: Vec<usize>,
        values: Vec<Value>,
    ) -> Result<(), PgTursoError> {
        let size = 8 + values.iter().map(Value::estimated_size).sum::<usize>();
        self.make_room(size)?;
        let max_rows = if self.json_rows {
            self.limits.max_records
        } else {
            self.limits
                .max_records
                .min(sql::MAX_PARAMS / cols.len().max(1))
        };
        let json = self.json_rows;
        let key = (!delete && !table.key.is_empty()).then(|| key_hash(table, &cols, &values));
        let txn = self.txn.as_mut().expect("inside a transaction");
        txn.pending_bytes += size;
        txn.pending_records += 1;
        match &mut txn.group {
            Some(g) if g.accepts(table, delete, &cols, max_rows, key) => {
                g.keys.extend(key);
                g.rows.push(values);
            }
            _ => {
                close_group(txn);
                txn.group = Some(Group {
                    table: table.clone(),
                    delete,
                    cols,
                    rows: vec![values],
                    json,
                    keys: key.into_iter().collect(),
                });
            }
        }
        Ok(())
    }

    /// Waits for the request in flight, if any, and continues the stream it answered.
    fn settle(&mut self) -> Result<(), PgTursoError> {
        let txn = self.txn.as_mut().expect("inside a transaction");
        let Some(p) = txn.pending_request.take() else {
            return Ok(());
        };
        let (lsn, tracked) = (txn.lsn, txn.tracked);
        let wrap = |source| wrap_error(tracked, lsn, source);
        let resp = match self.transport.finish(p.in_flight) {
            Ok(resp) => resp,
            // It carries no COMMIT: resending follows the same rules as a first attempt.
            Err(e) => match self.send(
                p.base.as_deref(),
                &p.request,
                p.standalone,
                false,
                lsn,
                Some(e),
            ) {
                Ok(Some(resp)) => resp,
                Ok(None) => {
                    unreachable!("a request without COMMIT is never resolved from progress")
                }
                Err(e) => return Err(wrap(e)),
            },
        };
        let next = check_batch(resp, &p.layout, &p.sqls, false).map_err(wrap)?;
        self.txn.as_mut().expect("inside a transaction").stream =
            next.map(|(baton, base_url)| Stream {
                baton,
                base_url: base_url.or(p.base),
            });
        Ok(())
    }

    /// Sends the pending statements; `commit` adds the progress row and COMMIT and closes the
    /// stream and waits for Turso's answer; otherwise the request travels while decoding goes on.
    /// The request is built before waiting for the one in flight, so Turso, which is usually
    /// the slower side, gets the next request as soon as it has answered the previous one.
    fn flush(&mut self, commit: bool) -> Result<(), PgTursoError> {
        let txn = self.txn.as_mut().expect("inside a transaction");
        let lsn = txn.lsn;
        close_group(txn);
        let mut stmts = std::mem::take(&mut txn.pending);
        txn.pending_bytes = 0;
        txn.pending_records = 0;
        if commit && txn.tracked {
            stmts.push(progress_upsert(&self.system_id, &self.slot, lsn));
        }
        let sqls: Vec<String> = stmts.iter().map(|s| s.sql.clone()).collect();
        // A request in flight always leaves the stream open (or `settle` fails): no BEGIN then.
        let part = BatchPart {
            begin: txn.stream.is_none() && txn.pending_request.is_none(),
            commit,
        };
        let (batch, layout) = hrana::transaction_batch(stmts, part);
        let mut requests = vec![batch];
        if commit {
            requests.push(StreamRequest::Close);
        }
        self.settle()?;
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
            });
            return Ok(());
        }
        let wrap = |source| wrap_error(tracked, lsn, source);
        let resp = match self.send(base.as_deref(), &req, standalone, tracked, lsn, None) {
            Ok(Some(resp)) => resp,
            // Turso already has this transaction: its response was lost, the commit was not.
            Ok(None) => {
                self.txn.as_mut().expect("inside a transaction").stream = None;
                return Ok(());
            }
            Err(e) => return Err(wrap(e)),
        };
        let next = check_batch(resp, &layout, &sqls, commit).map_err(wrap)?;
        self.txn.as_mut().expect("inside a transaction").stream =
            next.map(|(baton, base_url)| Stream {
                baton,
                base_url: base_url.or(base),
            });
        Ok(())
    }

    /// Sends `req`, retrying transient failures for `limits.retry_for`, but only when resending
    /// cannot apply anything twice: a request that was never sent is always resent; one whose
    /// outcome is unknown only if it stands alone (no open stream), and if it carries this
    /// transaction's COMMIT, only after the progress row shows Turso does not have it.
    /// `Ok(None)` means the progress row shows the transaction was committed already.
    /// `failed` is the error of a first attempt already made (a request sent in the background).
    fn send(
        &mut self,
        base: Option<&str>,
        req: &PipelineRequest,
        standalone: bool,
        commits_lsn: bool,
        lsn: u64,
        mut failed: Option<ClientError>,
    ) -> Result<Option<PipelineResponse>, ClientError> {
        let deadline = Instant::now() + self.limits.retry_for;
        let mut attempt = 0;
        loop {
            let err = match failed.take() {
                Some(e) => e,
                None => match self.transport.pipeline(base, req) {
                    Ok(resp) => return Ok(Some(resp)),
                    Err(e) => e,
                },
            };
            let not_sent = matches!(err, ClientError::Connect { .. });
            if !err.is_retryable() || !(standalone || not_sent) || Instant::now() >= deadline {
                return Err(err);
            }
            let mut last = err;
            loop {
                self.transport.pause(backoff(attempt));
                attempt += 1;
                if not_sent || !commits_lsn {
                    break;
                }
                match self.read_progress() {
                    Ok(applied) if applied.is_some_and(|a| a >= lsn) => return Ok(None),
                    Ok(_) => break,
                    Err(e) if e.is_retryable() && Instant::now() < deadline => last = e,
                    Err(_) => return Err(last),
                }
            }
            if Instant::now() >= deadline {
                return Err(last);
            }
        }
    }

    /// COMMIT of the decoded transaction. Returns the output line when something was replicated.
    pub fn commit(&mut self) -> Result<Option<String>, PgTursoError> {
        let Some(txn) = self.txn.as_ref() else {
            return Ok(None);
        };
        if txn.changes == 0 || txn.skip == Some(true) {
            self.txn = None;
            return Ok(None);
        }
        let (lsn, changes) = (txn.lsn, txn.changes);
        self.flush(true)?;
        let txn = self.txn.take().expect("inside a transaction");
        self.ensured.extend(txn.created);
        if let Some(known) = self.known.as_mut() {
            known.extend(txn.known);
        }
        if txn.tracked {
            self.applied_lsn = Some(Some(lsn));
        }
        Ok(Some(format!(
            "COMMIT {}: {changes} change{}",
            format_lsn(lsn),
            if changes == 1 { "" } else { "s" }
        )))
    }
}

/// `table`'s source and Turso shape as text, computed once per table description, not per change.
fn shape_signature(table: &Table) -> &String {
    table.shape.get_or_init(|| {
        format!(
            "{} {}",
            table.source,
            serde_json::to_string(&KnownTable::of(table)).expect("plain data serializes")
        )
    })
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

/// A hash of the key values of an upsert row (`values` of the columns `cols`). Equal keys hash
/// equal (-0.0 as 0.0, which SQLite also compares equal); a rare collision of different keys
/// only splits a statement. A key column missing from `cols` hashes as a constant.
fn key_hash(table: &Table, cols: &[usize], values: &[Value]) -> u64 {
    let mut h = DefaultHasher::new();
    for k in &table.key {
        match cols.iter().position(|c| c == k).map(|p| &values[p]) {
            None => 0u8.hash(&mut h),
            Some(Value::Null) => 1u8.hash(&mut h),
            Some(Value::Integer(n)) => (2u8, n).hash(&mut h),
            Some(Value::Float(f)) => (3u8, (f + 0.0).to_bits()).hash(&mut h),
            Some(Value::Text(t)) => (4u8, t).hash(&mut h),
            Some(Value::Blob(b)) => (5u8, b).hash(&mut h),
        }
    }
    h.finish()
}

/// Turns the open multi-row group, if any, into a pending statement.
fn close_group(txn: &mut Txn) {
    if let Some(g) = txn.group.take() {
        txn.pending.push(g.into_stmt());
    }
}

fn schema_ddl() -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {} (\"system_id\" TEXT NOT NULL, \"source\" TEXT NOT NULL, \"turso_name\" TEXT NOT NULL, \"definition\" TEXT NOT NULL, PRIMARY KEY (\"system_id\", \"source\"))",
        sql::quote_ident(SCHEMA_TABLE)
    )
}

fn schema_upsert(system_id: &str, source: &str, known: &KnownTable) -> Stmt {
    Stmt::new(
        format!(
            "INSERT INTO {} (\"system_id\", \"source\", \"turso_name\", \"definition\") VALUES (?, ?, ?, ?) ON CONFLICT (\"system_id\", \"source\") DO UPDATE SET \"turso_name\" = excluded.\"turso_name\", \"definition\" = excluded.\"definition\"",
            sql::quote_ident(SCHEMA_TABLE)
        ),
        vec![
            Value::Text(system_id.to_string()),
            Value::Text(source.to_string()),
            Value::Text(known.turso_name.clone()),
            Value::Text(serde_json::to_string(known).expect("plain data serializes")),
        ],
    )
}

fn progress_ddl() -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {} (\"system_id\" TEXT NOT NULL, \"slot\" TEXT NOT NULL, \"lsn\" INTEGER NOT NULL, \"lsn_text\" TEXT NOT NULL, \"updated_at\" TEXT NOT NULL, PRIMARY KEY (\"system_id\", \"slot\"))",
        sql::quote_ident(PROGRESS_TABLE)
    )
}

fn progress_upsert(system_id: &str, slot: &str, lsn: u64) -> Stmt {
    Stmt::new(
        format!(
            "INSERT INTO {} (\"system_id\", \"slot\", \"lsn\", \"lsn_text\", \"updated_at\") VALUES (?, ?, ?, ?, strftime('%Y-%m-%dT%H:%M:%fZ', 'now')) ON CONFLICT (\"system_id\", \"slot\") DO UPDATE SET \"lsn\" = excluded.\"lsn\", \"lsn_text\" = excluded.\"lsn_text\", \"updated_at\" = excluded.\"updated_at\"",
            sql::quote_ident(PROGRESS_TABLE)
        ),
        vec![
            Value::Text(system_id.to_string()),
            Value::Text(slot.to_string()),
            Value::Integer(lsn as i64),
            Value::Text(format_lsn(lsn)),
        ],
    )
}

/// Checks a transaction batch response; returns the stream (baton, base_url) to continue on.
fn check_batch(
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
fn batch_error(
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
        })
        .or(sqls.first())
        .map_or_else(String::new, |s| shorten(s));
    ClientError::Statement {
        message: error.message,
        sql,
    }
}

fn shorten(sql: &str) -> String {
    match sql.char_indices().nth(200) {
        Some((cut, _)) => format!("{}...", &sql[..cut]),
        None => sql.to_string(),
    }
}

mod streaming;
#[cfg(test)]
mod tests;
