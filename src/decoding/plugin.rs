//! The output plugin: `_PG_output_plugin_init` and every callback, each a thin shim that turns
//! raw decoding inputs into owned values, calls the [`Replicator`] and reports any error.
//!
//! Per-slot state is a boxed [`State`] in `ctx->output_plugin_private`. It is freed by a reset
//! callback on the decoding context's memory context, so it goes away on shutdown and on error
//! alike (`pg_logical_slot_get_changes` does not call the shutdown callback when it errors).
//!
//! Large transactions are streamed to the plugin while in progress (the `stream_*` callbacks):
//! pgturso lowers `logical_decoding_work_mem` for its decoding session (option
//! `decoding_work_mem`) once decoding reaches the slot's confirmed position, as a session-level
//! `SET`, and puts the session's value back when the session ends.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{c_char, c_void, CStr};
use std::rc::Rc;

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::apply::replicator::Replicator;
use crate::decoding::filter::Prepared;
use crate::decoding::{publication, tuple};
use crate::error::PgTursoError;
use crate::model::{Cell, RowChange, Table};
use crate::options::{self, Options};
use crate::turso::client::HttpTransport;
use crate::turso::sql::quoted_pg_name;

type NarrowedInfo = (Rc<tuple::RelInfo>, Rc<[String]>, Rc<tuple::RelInfo>);

/// Everything one decoding session keeps.
struct State {
    options: Options,
    replicator: Replicator<HttpTransport>,
    /// Reset after every change, so per-row allocations (output functions, detoasting) are freed.
    change_cxt: pg_sys::MemoryContext,
    /// This session's `logical_decoding_work_mem`, while it decodes with its own.
    work_mem: WorkMem,
    /// Relation descriptions narrowed to a publication's column list, by relation: the
    /// description and the list they were made from, and the result.
    narrowed: RefCell<HashMap<pg_sys::Oid, NarrowedInfo>>,
    /// Changes seen, for [`report_progress`] (PostgreSQL 15 only).
    #[cfg_attr(not(feature = "pg15"), allow(dead_code))]
    changes: u32,
}

/// pgturso's `logical_decoding_work_mem` for one decoding session, set and put back through
/// PostgreSQL's GUC machinery as a session-level `SET`: a configuration reload while the session
/// decodes neither overrides it nor is overridden when it is put back, and inside a transaction
/// the setting is undone with the transaction if the call fails.
enum WorkMem {
    /// The server's setting applies.
    Server,
    /// Set once decoding reaches the slot's confirmed position (see
    /// [`pgturso_filter_by_origin`]), in kB.
    Pending(i32),
    /// Set; `prior` is the session's own value to put back, `None` when it had none (then the
    /// reset value, which follows reloads, comes back).
    Applied { prior: Option<std::ffi::CString> },
}

const WORK_MEM_GUC: &CStr = c"logical_decoding_work_mem";

/// Sets `logical_decoding_work_mem` for this session (`value` `None`: resets it), reporting a
/// failure at `elevel`.
///
/// # Safety
/// Called in a backend, with no other GUC operation in progress.
unsafe fn set_work_mem(value: Option<&CStr>, elevel: i32) {
    // SAFETY: a plain GUC assignment; `value` outlives the call, which copies it.
    unsafe {
        pg_sys::set_config_option(
            WORK_MEM_GUC.as_ptr(),
            value.map_or(std::ptr::null(), CStr::as_ptr),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_SET,
            true,
            elevel,
            false,
        );
    }
}

impl WorkMem {
    /// Applies a pending setting.
    ///
    /// # Safety
    /// As [`set_work_mem`].
    unsafe fn apply(&mut self) {
        let WorkMem::Pending(kb) = *self else { return };
        // SAFETY: GetConfigOption and GetConfigOptionResetString return strings PostgreSQL owns,
        // valid until the setting next changes; they are copied at once.
        unsafe {
            let current =
                CStr::from_ptr(pg_sys::GetConfigOption(WORK_MEM_GUC.as_ptr(), false, false));
            let reset = CStr::from_ptr(pg_sys::GetConfigOptionResetString(WORK_MEM_GUC.as_ptr()));
            let prior = (current != reset).then(|| current.to_owned());
            let value = std::ffi::CString::new(format!("{kb}kB")).expect("no NUL in a number");
            set_work_mem(Some(&value), PgLogLevel::ERROR as i32);
            *self = WorkMem::Applied { prior };
        }
    }

    /// Puts the session's setting back, reporting a failure at `elevel`.
    ///
    /// # Safety
    /// As [`set_work_mem`].
    unsafe fn restore(&mut self, elevel: i32) {
        if let WorkMem::Applied { prior } = std::mem::replace(self, WorkMem::Server) {
            // SAFETY: as set_work_mem.
            unsafe { set_work_mem(prior.as_deref(), elevel) };
        }
    }
}

fn check_interrupts() {
    pg_sys::check_for_interrupts!();
}

/// Raises `err` as a PostgreSQL ERROR with every secret removed.
fn raise(err: PgTursoError, secrets: &[&str]) -> ! {
    err.into_report(secrets, "pgturso")
        .report(PgLogLevel::ERROR);
    unreachable!("an ERROR report does not return")
}

fn ok_or_raise<T>(r: Result<T, PgTursoError>, options: &Options) -> T {
    r.unwrap_or_else(|e| raise(e, &options.secrets()))
}

/// # Safety
/// `ctx` must be the decoding context handed to a callback after a non-init startup.
unsafe fn state<'a>(ctx: *mut pg_sys::LogicalDecodingContext) -> &'a mut State {
    // SAFETY: startup stored a `Box<State>` here; it lives until the context is deleted.
    unsafe {
        let p = (*ctx).output_plugin_private as *mut State;
        assert!(!p.is_null(), "pgturso state is set by the startup callback");
        &mut *p
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn free_state(arg: *mut c_void) {
    // SAFETY: `arg` is the pointer produced by `Box::into_raw` in startup, freed exactly once here.
    let mut state = unsafe { Box::from_raw(arg as *mut State) };
    // After a normal end the shutdown callback has closed everything, and this does nothing.
    // After an ERROR (the shutdown callback does not run then) it rolls back a Turso transaction
    // left open, which would hold Turso's write lock until sqld expires it. PostgreSQL deletes
    // this memory while it cleans up the failed transaction with interrupts held, so the request
    // cannot be interrupted; it is bounded by the option timeout_ms.
    state.replicator.abort();
    // In a SQL call the setting was made inside the failed transaction, whose abort undoes it
    // (and may already have: setting it again here could bring back a value of that aborted
    // transaction). A walsender decodes outside a transaction: put it back here, with a failure
    // only a WARNING, as this runs during error cleanup.
    // SAFETY: am_walsender is a plain flag of this backend; then as set_work_mem.
    unsafe {
        if pg_sys::am_walsender {
            state.work_mem.restore(PgLogLevel::WARNING as i32);
        }
    }
    drop(state);
}

/// `(name, value)` pairs from the DefElem list of plugin options.
unsafe fn raw_options(list: *mut pg_sys::List) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    if list.is_null() {
        return out;
    }
    // SAFETY: `list` is the decoding context's list of DefElem nodes.
    unsafe {
        for i in 0..(*list).length {
            let elem = pg_sys::list_nth(list, i) as *mut pg_sys::DefElem;
            let name = CStr::from_ptr((*elem).defname)
                .to_string_lossy()
                .into_owned();
            let value = if (*elem).arg.is_null() {
                None
            } else {
                Some(
                    CStr::from_ptr(pg_sys::defGetString(elem))
                        .to_string_lossy()
                        .into_owned(),
                )
            };
            out.push((name, value));
        }
    }
    out
}

/// Entry point PostgreSQL looks up when loading the plugin.
#[pg_guard]
#[no_mangle]
pub unsafe extern "C-unwind" fn _PG_output_plugin_init(cb: *mut pg_sys::OutputPluginCallbacks) {
    // SAFETY: PostgreSQL passes a valid, zeroed callback struct.
    unsafe {
        (*cb).startup_cb = Some(pgturso_startup);
        (*cb).begin_cb = Some(pgturso_begin);
        (*cb).change_cb = Some(pgturso_change);
        (*cb).truncate_cb = Some(pgturso_truncate);
        (*cb).commit_cb = Some(pgturso_commit);
        (*cb).shutdown_cb = Some(pgturso_shutdown);
        (*cb).stream_start_cb = Some(pgturso_stream_start);
        (*cb).stream_stop_cb = Some(pgturso_stream_stop);
        (*cb).stream_abort_cb = Some(pgturso_stream_abort);
        (*cb).stream_commit_cb = Some(pgturso_stream_commit);
        (*cb).stream_change_cb = Some(pgturso_stream_change);
        (*cb).stream_truncate_cb = Some(pgturso_stream_truncate);
        (*cb).filter_by_origin_cb = Some(pgturso_filter_by_origin);
        (*cb).message_cb = Some(pgturso_message);
    }
}

/* STARTUP callback */
#[pg_guard]
unsafe extern "C-unwind" fn pgturso_startup(
    ctx: *mut pg_sys::LogicalDecodingContext,
    opt: *mut pg_sys::OutputPluginOptions,
    is_init: bool,
) {
    // SAFETY: valid pointers from PostgreSQL for the duration of the call.
    unsafe {
        (*opt).output_type = pg_sys::OutputPluginOutputType::OUTPUT_PLUGIN_TEXTUAL_OUTPUT;
        (*ctx).output_plugin_private = std::ptr::null_mut();
        // The rows an ALTER TABLE rewrite writes (a column type change, a volatile default) are
        // the table's new contents: pgturso replaces the Turso table with them.
        (*opt).receive_rewrites = true;
        if is_init {
            // Slot creation passes no options and decodes nothing.
            return;
        }
        // The options (and so the token) are part of the query text: keep that text out of the
        // server log lines of any error raised while decoding.
        pg_sys::debug_query_string = std::ptr::null();
        let options = match options::parse(&raw_options((*ctx).output_plugin_options)) {
            Ok(o) => o,
            Err(e) => raise(e, &[]),
        };
        let slot = CStr::from_ptr((*(*ctx).slot).data.name.data.as_ptr())
            .to_string_lossy()
            .into_owned();
        let armed = take_group_commit_armed(&slot);
        if options.group_commit && !armed && !in_publication_worker() {
            raise(PgTursoError::GroupCommitOutsideWorker, &options.secrets());
        }
        publication::reset();
        let system_id = pg_sys::GetSystemIdentifier().to_string();
        let transport = HttpTransport::new(
            options.base_url.clone(),
            options.ca_file.clone(),
            options.token.as_deref(),
            options.timeout,
            check_interrupts,
        );
        let change_cxt = pg_sys::AllocSetContextCreateInternal(
            (*ctx).context,
            c"pgturso change".as_ptr(),
            pg_sys::ALLOCSET_DEFAULT_MINSIZE as usize,
            pg_sys::ALLOCSET_DEFAULT_INITSIZE as usize,
            pg_sys::ALLOCSET_DEFAULT_MAXSIZE as usize,
        );
        // PostgreSQL turns streaming on because the stream callbacks exist; the option can turn
        // it off. The lower memory limit is what makes PostgreSQL stream (or spill) early.
        (*ctx).streaming &= options.streaming && !options.group_commit;
        let server_kb = pg_sys::logical_decoding_work_mem;
        let kb = match options.decoding_work_mem_kb {
            Some(kb) => Some(kb as i32),
            None if (*ctx).streaming => {
                Some(server_kb.min(options::DEFAULT_DECODING_WORK_MEM_KB as i32))
            }
            None => None,
        };
        let work_mem = kb
            .filter(|&kb| kb != server_kb)
            .map_or(WorkMem::Server, WorkMem::Pending);
        // Temporary files live in base/pgsql_tmp; a backend's working directory is the data
        // directory.
        let spool_dir = std::path::PathBuf::from("base/pgsql_tmp");
        let mut replicator = Replicator::new(transport, system_id, slot, options.limits)
            .with_source_name(tuple::turso_name_of);
        if options.group_commit {
            replicator = replicator
                .with_group_commit()
                .with_group_max_age(options.group_max);
        }
        let state = Box::new(State {
            replicator: replicator
                .with_history(
                    (*(*ctx).slot).data.confirmed_flush,
                    crate::decoding::wal::commit_at,
                )
                .with_skip_snapshot(options.skip_snapshot.clone())
                .with_spool_dir(spool_dir),
            options,
            change_cxt,
            work_mem,
            narrowed: RefCell::default(),
            changes: 0,
        });
        let raw = Box::into_raw(state);
        (*ctx).output_plugin_private = raw as *mut c_void;
        let cb = pg_sys::MemoryContextAlloc(
            (*ctx).context,
            std::mem::size_of::<pg_sys::MemoryContextCallback>(),
        ) as *mut pg_sys::MemoryContextCallback;
        (*cb).func = Some(free_state);
        (*cb).arg = raw as *mut c_void;
        (*cb).next = std::ptr::null_mut();
        pg_sys::MemoryContextRegisterResetCallback((*ctx).context, cb);
    }
}

thread_local! {
    /// The slot whose next decoding call may use `group_commit` in this backend (see
    /// [`arm_group_commit`]).
    static GROUP_COMMIT_ARMED: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Lets the next decoding call of `slot` in this backend use `group_commit`: the SQL API's
/// `pgturso._decode_tables` calls it right before `pg_logical_slot_peek_changes`, and advances
/// the slot itself once that call (and so Turso's last commit) has returned.
pub fn arm_group_commit(slot: &str) {
    GROUP_COMMIT_ARMED.with(|a| *a.borrow_mut() = Some(slot.to_string()));
}

/// Whether `slot` was armed (see [`arm_group_commit`]); disarms it either way.
fn take_group_commit_armed(slot: &str) -> bool {
    GROUP_COMMIT_ARMED
        .with(|a| a.borrow_mut().take())
        .as_deref()
        == Some(slot)
}

/// This process is pgturso's publication worker (see `crate::worker`), which may use
/// `group_commit` (the SQL API arms each of its calls, see [`arm_group_commit`]).
fn in_publication_worker() -> bool {
    // SAFETY: reads process globals set at startup; the entry is set in background workers.
    unsafe {
        let entry = pg_sys::MyBgworkerEntry;
        !entry.is_null()
            && CStr::from_ptr((*entry).bgw_type.as_ptr()).to_bytes()
                == crate::worker::WORKER_TYPE.as_bytes()
    }
}

/* SHUTDOWN callback: the state is freed with the decoding context's memory */
#[pg_guard]
unsafe extern "C-unwind" fn pgturso_shutdown(ctx: *mut pg_sys::LogicalDecodingContext) {
    // SAFETY: valid pointer from PostgreSQL; the state is unset after an init-only startup.
    unsafe {
        if !(*ctx).output_plugin_private.is_null() {
            // A transaction streamed only in part (still running in PostgreSQL) is decoded again
            // from its start next time: roll back what Turso has of it.
            let state = state(ctx);
            if state.options.group_commit {
                // The end of the call: the held group goes to Turso now (the worker advances
                // the slot only after this call has returned).
                let finished = state.replicator.finish_group();
                ok_or_raise(finished, &state.options);
            }
            state.replicator.close();
            state.work_mem.restore(PgLogLevel::ERROR as i32);
        }
    }
}

/* FILTER BY ORIGIN callback: filters nothing; sets this session's decoding memory in time */
///
/// Decoding starts at the slot's restart position, often well before its confirmed position, and
/// reads again transactions that were replicated already (PostgreSQL skips them at their commit).
/// They cannot be streamed, so with a small `logical_decoding_work_mem` PostgreSQL would spill
/// them to disk just to forget them. pgturso's own setting therefore takes effect only once
/// decoding has reached the confirmed position. This callback runs before every decoded change,
/// which is what makes it the place for that.
#[pg_guard]
unsafe extern "C-unwind" fn pgturso_filter_by_origin(
    ctx: *mut pg_sys::LogicalDecodingContext,
    _origin_id: pg_sys::RepOriginId,
) -> bool {
    // SAFETY: valid pointers from PostgreSQL; the state is unset while a slot is created.
    unsafe {
        let p = (*ctx).output_plugin_private as *mut State;
        if p.is_null() {
            return false;
        }
        let state = &mut *p;
        if matches!(state.work_mem, WorkMem::Pending(_))
            && (*(*ctx).reader).ReadRecPtr >= (*(*ctx).slot).data.confirmed_flush
        {
            state.work_mem.apply();
        }
        false
    }
}

/* BEGIN callback */
#[pg_guard]
unsafe extern "C-unwind" fn pgturso_begin(
    ctx: *mut pg_sys::LogicalDecodingContext,
    txn: *mut pg_sys::ReorderBufferTXN,
) {
    // SAFETY: valid pointers from PostgreSQL; final_lsn is the commit record's LSN.
    unsafe {
        let state = state(ctx);
        let begun = state.replicator.begin_at(
            (*txn).final_lsn,
            (*txn).xid.into_inner(),
            Some((*txn).xact_time.commit_time),
        );
        ok_or_raise(begun, &state.options);
    }
}

/// Runs `f` with the per-change memory context current, then resets it.
unsafe fn in_change_cxt<T>(state: &State, f: impl FnOnce() -> T) -> T {
    // SAFETY: plain memory context switch; PostgreSQL's error recovery restores the current
    // context if `f` raises.
    unsafe {
        let old = pg_sys::CurrentMemoryContext;
        pg_sys::CurrentMemoryContext = state.change_cxt;
        let out = f();
        pg_sys::CurrentMemoryContext = old;
        pg_sys::MemoryContextReset(state.change_cxt);
        out
    }
}

/// The schema of the extension's tables (`pgturso.publications`, …).
const INTERNAL_SCHEMA: &str = "pgturso";

/// Whether a change of kind `kind` to `table` (relation `relid`) by top-level transaction `xid`
/// is replicated, and as which relation: `relid` itself, or for a partition the partitioned table
/// its changes go to (the one `table_name` names, or with `publish_via_partition_root` the
/// publication's top-most ancestor). It must pass `table_name`, `publication_names` must publish
/// that kind of change of the table, and the table's initial copy (`skip_snapshots`) must not
/// contain the transaction.
///
/// # Safety
/// Inside a decoding callback.
unsafe fn target(options: &Options, info: &tuple::RelInfo, kind: Kind, xid: u32) -> Option<Route> {
    let (relid, table) = (info.relid, &info.table);
    // The extension's own bookkeeping (the worker writes its row at every step) is no user data:
    // never replicated, not even by FOR ALL TABLES.
    if table.pg_schema == INTERNAL_SCHEMA {
        return None;
    }
    let mut target = relid;
    let mut columns = None;
    let mut filters = None;
    if let Some(oids) = &options.table_oid {
        let listed = |o: &pg_sys::Oid| oids.contains(&o.to_u32());
        if !listed(&relid) {
            // SAFETY: as the caller guarantees.
            target = info.ancestors.iter().copied().find(listed)?;
        }
    } else if let Some(f) = &options.table {
        if !f.matches(&table.pg_schema, &table.pg_name) {
            // SAFETY: as the caller guarantees.
            target = info
                .ancestors
                .iter()
                .copied()
                .find(|&a| tuple::is_named(a, f))?;
        }
    }
    if let Some(names) = &options.publications {
        // SAFETY: as the caller guarantees.
        let a = unsafe { publication::actions(relid, names) };
        let published = match kind {
            Kind::Insert => a.insert,
            Kind::Update => a.update,
            Kind::Delete => a.delete,
            Kind::Truncate => a.truncate,
        };
        if !published {
            return None;
        }
        target = a.root.unwrap_or(target);
        columns = a.columns;
        filters = a.filters;
    }
    let copied = |oid: pg_sys::Oid| {
        options
            .skip_snapshots
            .get(&oid.to_u32())
            .is_some_and(|s| s.sees(xid))
    };
    if copied(relid) || copied(target) {
        return None;
    }
    Some(Route {
        target,
        columns,
        filters,
    })
}

/// Where a change goes and what of it: see [`target`].
struct Route {
    /// The relation whose Turso table gets the change.
    target: pg_sys::Oid,
    /// The publications' column list.
    columns: Option<Rc<[String]>>,
    /// The publications' row filters.
    filters: Option<Rc<publication::Filters>>,
}

/// `info` narrowed to a publication's column list `columns` (as itself without one), cached
/// until either changes (both come from caches PostgreSQL's invalidations reset).
fn narrowed(
    state: &State,
    info: Rc<tuple::RelInfo>,
    columns: Option<Rc<[String]>>,
) -> Rc<tuple::RelInfo> {
    let Some(columns) = columns else {
        return info;
    };
    let mut cache = state.narrowed.borrow_mut();
    if let Some((from, cols, narrow)) = cache.get(&info.relid) {
        if Rc::ptr_eq(from, &info) && Rc::ptr_eq(cols, &columns) {
            return narrow.clone();
        }
    }
    let narrow = Rc::new(ok_or_raise(info.only(&columns), &state.options));
    cache.insert(info.relid, (info, columns, narrow.clone()));
    narrow
}

#[derive(Clone, Copy)]
enum Kind {
    Insert,
    Update,
    Delete,
    Truncate,
}

/// The row change PostgreSQL hands over, as owned values, with its table; `None` for a table
/// `table_name` filters out (the open Turso stream is kept alive meanwhile) and for change kinds
/// pgturso does not replicate.
///
/// # Safety
/// Valid pointers from a change callback.
unsafe fn decode_change(
    state: &mut State,
    xid: u32,
    rel: pg_sys::Relation,
    change: *mut pg_sys::ReorderBufferChange,
) -> Option<(Rc<tuple::RelInfo>, RowChange)> {
    // SAFETY: valid pointers from PostgreSQL for the duration of the call.
    unsafe {
        let info = ok_or_raise(tuple::rel_info(rel), &state.options);
        use pg_sys::ReorderBufferChangeType::*;
        let kind = match (*change).action {
            REORDER_BUFFER_CHANGE_INSERT => Kind::Insert,
            REORDER_BUFFER_CHANGE_UPDATE => Kind::Update,
            REORDER_BUFFER_CHANGE_DELETE => Kind::Delete,
            _ => return None,
        };
        let Some(Route {
            target,
            columns,
            filters,
        }) = target(&state.options, &info, kind, xid)
        else {
            // Decoding may dwell on other tables for long: keep our Turso stream open.
            let kept = state.replicator.keep_alive();
            ok_or_raise(kept, &state.options);
            return None;
        };
        // A partition replicated as its partitioned table: its tuples in that table's row type.
        let own_relid = info.relid;
        let as_root = (target != info.relid)
            .then(|| ok_or_raise(tuple::AsRoot::open(rel, target), &state.options));
        let tp = (*change).data.tp;
        let passed = match &filters {
            None => Passed::Unfiltered,
            Some(f) => {
                let view = if f.relid == own_relid {
                    FilterView::Own
                } else if f.relid == target && as_root.is_some() {
                    FilterView::Root
                } else {
                    FilterView::Other(ok_or_raise(
                        tuple::AsRoot::open(rel, f.relid),
                        &state.options,
                    ))
                };
                let root = as_root.as_ref();
                let passes = |filter: &Option<Prepared>, buf: ChangeTuple| -> bool {
                    let (Some(filter), Some(t)) = (filter, heap_tuple(buf)) else {
                        return true;
                    };
                    let (tupdesc, t) = match (&view, root) {
                        (FilterView::Root, Some(r)) => (r.tupdesc(), r.convert(t)),
                        (FilterView::Other(m), _) => (m.tupdesc(), m.convert(t)),
                        _ => ((*rel).rd_att, t),
                    };
                    filter.passes(tupdesc, t)
                };
                in_change_cxt(state, || match kind {
                    Kind::Insert => Passed::from(passes(&f.insert, tp.newtuple)),
                    Kind::Delete => Passed::from(passes(&f.delete, tp.oldtuple)),
                    Kind::Update => {
                        let new = passes(&f.update, tp.newtuple);
                        // Without an old tuple the key did not change: the old row is judged
                        // as the new one (a filter of an UPDATE publication reads only the
                        // replica identity).
                        let old = match heap_tuple(tp.oldtuple) {
                            Some(_) => passes(&f.update, tp.oldtuple),
                            None => new,
                        };
                        match (old, new) {
                            (true, true) => Passed::Unfiltered,
                            (false, true) => Passed::Enters,
                            (true, false) => Passed::Leaves,
                            (false, false) => Passed::No,
                        }
                    }
                    Kind::Truncate => Passed::Unfiltered,
                })
            }
        };
        if passed == Passed::No {
            let kept = state.replicator.keep_alive();
            ok_or_raise(kept, &state.options);
            return None;
        }
        let rewrite = info.rewrite.filter(|_| as_root.is_none());
        let info = match &as_root {
            Some(root) => root.info.clone(),
            None => info,
        };
        let info = narrowed(state, info, columns);
        let tupdesc = match &as_root {
            Some(root) => root.tupdesc(),
            None => (*rel).rd_att,
        };
        let tuple_of = |buf: ChangeTuple| {
            let Some(tuple) = heap_tuple(buf) else {
                return Ok(None);
            };
            let tuple = match &as_root {
                Some(root) => root.convert(tuple),
                None => tuple,
            };
            tuple::cells(&info, tupdesc, tuple).map(Some)
        };
        let decoded = in_change_cxt(state, || -> Result<Option<RowChange>, PgTursoError> {
            use pg_sys::ReorderBufferChangeType::*;
            Ok(match (*change).action {
                REORDER_BUFFER_CHANGE_INSERT => {
                    tuple_of(tp.newtuple)?.map(|new| RowChange::Insert { new })
                }
                REORDER_BUFFER_CHANGE_UPDATE => {
                    tuple_of(tp.newtuple)?.map(|new| RowChange::Update { old: None, new })
                }
                REORDER_BUFFER_CHANGE_DELETE => Some(RowChange::Delete {
                    old: tuple_of(tp.oldtuple)?,
                }),
                _ => None,
            })
        });
        let mut row = ok_or_raise(decoded, &state.options)?;
        // A partition's rewrite holds that partition's rows only: as the partitioned table's,
        // they are upserts, not the table's whole contents.
        if let (Some(rewrite), RowChange::Insert { new }) = (rewrite, &mut row) {
            row = RowChange::Rewrite {
                rewrite,
                new: std::mem::take(new),
            };
        }
        if let RowChange::Update { old, .. } = &mut row {
            *old = ok_or_raise(
                in_change_cxt(state, || tuple_of(tp.oldtuple)),
                &state.options,
            );
        }
        // pgoutput's UPDATE across a row filter: a row that starts to pass is inserted, one that
        // stops passing is deleted.
        row = match (passed, row) {
            // The inserted row needs every value: an unchanged TOASTed one comes from the old
            // tuple, which REPLICA IDENTITY FULL logs whole, as pgoutput takes it.
            (Passed::Enters, RowChange::Update { old, mut new }) => {
                if let Some(old) = old.filter(|_| info.table.identity_full) {
                    for (n, o) in new.iter_mut().zip(old) {
                        if matches!(n, Cell::UnchangedToast) {
                            *n = o;
                        }
                    }
                }
                // Without REPLICA IDENTITY FULL (an UPDATE of the key), such a value is nowhere:
                // pgoutput sends the row without it and its subscriber stores NULL. Stop instead
                // of losing it.
                if let Some(i) = new.iter().position(|n| matches!(n, Cell::UnchangedToast)) {
                    let t = &info.table;
                    let error = PgTursoError::FilterEntryWithoutValue {
                        table: t.display_name(),
                        quoted: quoted_pg_name(t),
                        column: t.columns[i].name.clone(),
                    };
                    ok_or_raise::<()>(Err(error), &state.options);
                }
                RowChange::Insert { new }
            }
            (Passed::Leaves, RowChange::Update { old: Some(old), .. }) => {
                RowChange::Delete { old: Some(old) }
            }
            (_, row) => row,
        };
        Some((info, row))
    }
}

/// What a change's row filter says of it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Passed {
    /// No filter, or the row passes it (an UPDATE: before and after).
    Unfiltered,
    /// An UPDATE after which the row passes, and before which it did not.
    Enters,
    /// An UPDATE after which the row no longer passes.
    Leaves,
    /// The row does not pass.
    No,
}

impl From<bool> for Passed {
    fn from(passes: bool) -> Passed {
        if passes {
            Passed::Unfiltered
        } else {
            Passed::No
        }
    }
}

/// The row type a row filter reads a change's tuple in: the table's own, the partition root's
/// the change goes to, or another partition ancestor's.
enum FilterView {
    Own,
    Root,
    Other(tuple::AsRoot),
}

/// PostgreSQL 15 reports decoding progress to a walsender (keepalives, reading its client's
/// replies) only when the plugin asks; 16 and later do it themselves every 100 changes
/// (`update_progress_txn`). Without it, a long transaction of changes pgturso does not write out
/// lets `wal_sender_timeout` end a `pg_recvlogical` connection. Asks every 100 changes, as 15's
/// pgoutput does; a no-op for the SQL functions, which have no progress callback.
///
/// # Safety
/// `ctx` is the decoding context of the callback running.
#[cfg(feature = "pg15")]
unsafe fn report_progress(ctx: *mut pg_sys::LogicalDecodingContext, state: &mut State) {
    state.changes = state.changes.wrapping_add(1);
    if state.changes.is_multiple_of(100) {
        // SAFETY: as the caller guarantees.
        unsafe { pg_sys::OutputPluginUpdateProgress(ctx, false) };
    }
}

/// PostgreSQL 16 and later report progress themselves (see the 15 version).
///
/// # Safety
/// None: a no-op.
#[cfg(not(feature = "pg15"))]
unsafe fn report_progress(_ctx: *mut pg_sys::LogicalDecodingContext, _state: &mut State) {}

/// A change's old or new tuple as the reorder buffer holds it: PostgreSQL 15 and 16 wrap the
/// heap tuple in a `ReorderBufferTupleBuf`, 17 removed the wrapper.
#[cfg(any(feature = "pg15", feature = "pg16"))]
type ChangeTuple = *mut pg_sys::ReorderBufferTupleBuf;
#[cfg(not(any(feature = "pg15", feature = "pg16")))]
type ChangeTuple = pg_sys::HeapTuple;

/// The heap tuple of a change's tuple, `None` when the change has none.
///
/// # Safety
/// `buf` is null or a tuple of a change the reorder buffer is passing to a callback.
#[cfg(any(feature = "pg15", feature = "pg16"))]
unsafe fn heap_tuple(buf: ChangeTuple) -> Option<pg_sys::HeapTuple> {
    // SAFETY: as the caller guarantees; the heap tuple is embedded in the buffer.
    (!buf.is_null()).then(|| unsafe { &raw mut (*buf).tuple })
}

/// The heap tuple of a change's tuple, `None` when the change has none.
///
/// # Safety
/// `buf` is null or a tuple of a change the reorder buffer is passing to a callback.
#[cfg(not(any(feature = "pg15", feature = "pg16")))]
unsafe fn heap_tuple(buf: ChangeTuple) -> Option<pg_sys::HeapTuple> {
    (!buf.is_null()).then_some(buf)
}

/// The replicated ones of the relations a TRUNCATE names.
///
/// # Safety
/// `relations` holds `nrelations` open relations.
unsafe fn truncated_tables(
    state: &State,
    xid: u32,
    nrelations: i32,
    relations: *mut pg_sys::Relation,
) -> Vec<Table> {
    // SAFETY: as the caller guarantees.
    unsafe {
        let rels = if relations.is_null() || nrelations <= 0 {
            &[][..]
        } else {
            std::slice::from_raw_parts(relations, nrelations as usize)
        };
        let mut tables = Vec::with_capacity(rels.len());
        for &rel in rels {
            let info = ok_or_raise(tuple::rel_info(rel), &state.options);
            // As pgoutput: a partition replicated as its partitioned table is truncated through
            // that table only; a partitioned table is truncated only where it is replicated as
            // one (table_name names it, or a publication through the partition root holds it),
            // otherwise its partitions are.
            let Some(Route {
                target, columns, ..
            }) = target(&state.options, &info, Kind::Truncate, xid)
            else {
                continue;
            };
            if target != info.relid {
                continue;
            }
            if (*(*rel).rd_rel).relkind as u8 == pg_sys::RELKIND_PARTITIONED_TABLE {
                let named = state.options.table.is_some() || state.options.table_oid.is_some();
                let via_root = state
                    .options
                    .publications
                    .as_ref()
                    .is_some_and(|names| publication::actions(info.relid, names).via_root);
                if !named && !via_root {
                    continue;
                }
            }
            tables.push(narrowed(state, info, columns).table.clone());
        }
        tables
    }
}

/// The announcement the extension's event trigger writes into the WAL for a dropped table
/// (`pg_logical_emit_message(true, 'pgturso', '{"drop": "<database oid>.<table oid>"}')`).
#[derive(serde::Deserialize)]
struct Announcement {
    drop: String,
}

/* MESSAGE callback: with option drop_tables, a dropped table's Turso table is dropped. A drop
in a transaction PostgreSQL streams (larger than decoding_work_mem) keeps the Turso table: the
streamed message does not say which subtransaction it belongs to. */
#[pg_guard]
unsafe extern "C-unwind" fn pgturso_message(
    ctx: *mut pg_sys::LogicalDecodingContext,
    _txn: *mut pg_sys::ReorderBufferTXN,
    _lsn: pg_sys::XLogRecPtr,
    transactional: bool,
    prefix: *const c_char,
    size: pg_sys::Size,
    message: *const c_char,
) {
    // SAFETY: valid pointers from PostgreSQL for the duration of the call.
    unsafe {
        let state = state(ctx);
        if !transactional
            || !state.options.drop_tables
            || prefix.is_null()
            || CStr::from_ptr(prefix).to_bytes() != b"pgturso"
        {
            return;
        }
        let bytes = std::slice::from_raw_parts(message as *const u8, size);
        let Ok(a) = serde_json::from_slice::<Announcement>(bytes) else {
            return;
        };
        // With a table filter, only that table (a publication's membership is gone with the
        // table: any table pgturso replicated into this Turso database).
        let oid = a
            .drop
            .split_once('.')
            .and_then(|(_, o)| o.parse::<u32>().ok());
        if let Some(oids) = &state.options.table_oid {
            if !oid.is_some_and(|o| oids.contains(&o)) {
                return;
            }
        }
        let only = match (&state.options.table, &state.options.table_oid) {
            (Some(f), None) => Some(Table::turso_name_for(&f.schema, &f.name)),
            _ => None,
        };
        let result = state.replicator.drop_source(&a.drop, only.as_deref());
        ok_or_raise(result, &state.options);
    }
}

/* CHANGE callback */
#[pg_guard]
unsafe extern "C-unwind" fn pgturso_change(
    ctx: *mut pg_sys::LogicalDecodingContext,
    txn: *mut pg_sys::ReorderBufferTXN,
    rel: pg_sys::Relation,
    change: *mut pg_sys::ReorderBufferChange,
) {
    // SAFETY: valid pointers from PostgreSQL for the duration of the call.
    unsafe {
        let state = state(ctx);
        report_progress(ctx, state);
        let Some((info, row)) = decode_change(state, top_xid(txn), rel, change) else {
            return;
        };
        let result = state.replicator.change(&info.table, row);
        ok_or_raise(result, &state.options);
    }
}

/* TRUNCATE callback */
#[pg_guard]
unsafe extern "C-unwind" fn pgturso_truncate(
    ctx: *mut pg_sys::LogicalDecodingContext,
    txn: *mut pg_sys::ReorderBufferTXN,
    nrelations: i32,
    relations: *mut pg_sys::Relation,
    _change: *mut pg_sys::ReorderBufferChange,
) {
    // SAFETY: `relations` holds `nrelations` open relations.
    unsafe {
        let state = state(ctx);
        let tables = truncated_tables(state, top_xid(txn), nrelations, relations);
        let result = state.replicator.truncate(&tables);
        ok_or_raise(result, &state.options);
    }
}

/// Hands the output line of a replicated transaction to PostgreSQL.
///
/// # Safety
/// `ctx` from a commit callback.
unsafe fn write_line(ctx: *mut pg_sys::LogicalDecodingContext, line: &str) {
    // SAFETY: as the caller guarantees; the line is copied into ctx->out.
    unsafe {
        pg_sys::OutputPluginPrepareWrite(ctx, true);
        pg_sys::appendBinaryStringInfo((*ctx).out, line.as_ptr().cast(), line.len() as i32);
        pg_sys::OutputPluginWrite(ctx, true);
    }
}

/* COMMIT callback: returns only once Turso has committed the transaction */
#[pg_guard]
unsafe extern "C-unwind" fn pgturso_commit(
    ctx: *mut pg_sys::LogicalDecodingContext,
    _txn: *mut pg_sys::ReorderBufferTXN,
    _commit_lsn: pg_sys::XLogRecPtr,
) {
    // SAFETY: valid pointers from PostgreSQL for the duration of the call.
    unsafe {
        let state = state(ctx);
        let line = ok_or_raise(state.replicator.commit(), &state.options);
        if let Some(line) = line {
            write_line(ctx, &line);
        }
    }
}

/// The top-level transaction id of `txn`.
///
/// # Safety
/// `txn` is a valid transaction of the reorder buffer.
unsafe fn top_xid(txn: *mut pg_sys::ReorderBufferTXN) -> u32 {
    // SAFETY: as the caller guarantees; `toptxn` is null for a top-level transaction.
    unsafe {
        let top = if (*txn).toptxn.is_null() {
            txn
        } else {
            (*txn).toptxn
        };
        (*top).xid.into_inner()
    }
}

/* STREAM START callback: a piece of an in-progress transaction follows */
#[pg_guard]
unsafe extern "C-unwind" fn pgturso_stream_start(
    ctx: *mut pg_sys::LogicalDecodingContext,
    txn: *mut pg_sys::ReorderBufferTXN,
) {
    // SAFETY: valid pointers from PostgreSQL for the duration of the call.
    unsafe {
        let state = state(ctx);
        let started = state
            .replicator
            .stream_start(top_xid(txn), (*txn).first_lsn);
        ok_or_raise(started, &state.options);
    }
}

/* STREAM STOP callback */
#[pg_guard]
unsafe extern "C-unwind" fn pgturso_stream_stop(
    ctx: *mut pg_sys::LogicalDecodingContext,
    txn: *mut pg_sys::ReorderBufferTXN,
) {
    // SAFETY: valid pointers from PostgreSQL for the duration of the call.
    unsafe {
        let state = state(ctx);
        // The last piece, streamed when PostgreSQL decoded the commit record, has the commit's
        // end set: its stream commit follows at once, whatever WAL there is after it.
        let committing = (*txn).end_lsn != 0;
        let read_to = (*(*ctx).reader).EndRecPtr;
        let caught_up = !committing && read_to >= pg_sys::GetFlushRecPtr(std::ptr::null_mut());
        let stopped = state.replicator.stream_stop(caught_up);
        ok_or_raise(stopped, &state.options);
    }
}

/* STREAM ABORT callback: a streamed transaction or one of its subtransactions rolled back */
#[pg_guard]
unsafe extern "C-unwind" fn pgturso_stream_abort(
    ctx: *mut pg_sys::LogicalDecodingContext,
    txn: *mut pg_sys::ReorderBufferTXN,
    _abort_lsn: pg_sys::XLogRecPtr,
) {
    // SAFETY: valid pointers from PostgreSQL for the duration of the call.
    unsafe {
        let state = state(ctx);
        let aborted = state
            .replicator
            .stream_abort(top_xid(txn), (*txn).xid.into_inner());
        ok_or_raise(aborted, &state.options);
    }
}

/* STREAM COMMIT callback: returns only once Turso has committed the transaction */
#[pg_guard]
unsafe extern "C-unwind" fn pgturso_stream_commit(
    ctx: *mut pg_sys::LogicalDecodingContext,
    txn: *mut pg_sys::ReorderBufferTXN,
    commit_lsn: pg_sys::XLogRecPtr,
) {
    // SAFETY: valid pointers from PostgreSQL for the duration of the call.
    unsafe {
        let state = state(ctx);
        let committed = state.replicator.stream_commit(
            (*txn).xid.into_inner(),
            commit_lsn,
            Some((*txn).xact_time.commit_time),
        );
        if let Some(line) = ok_or_raise(committed, &state.options) {
            write_line(ctx, &line);
        }
    }
}

/* STREAM CHANGE callback */
#[pg_guard]
unsafe extern "C-unwind" fn pgturso_stream_change(
    ctx: *mut pg_sys::LogicalDecodingContext,
    txn: *mut pg_sys::ReorderBufferTXN,
    rel: pg_sys::Relation,
    change: *mut pg_sys::ReorderBufferChange,
) {
    // SAFETY: valid pointers from PostgreSQL; `change->txn` is the (sub)transaction that made
    // the change, `txn` its top-level transaction.
    unsafe {
        let state = state(ctx);
        report_progress(ctx, state);
        let Some((info, row)) = decode_change(state, top_xid(txn), rel, change) else {
            return;
        };
        let sub = (*(*change).txn).xid.into_inner();
        let result = state
            .replicator
            .stream_change(top_xid(txn), sub, &info.table, row);
        ok_or_raise(result, &state.options);
    }
}

/* STREAM TRUNCATE callback */
#[pg_guard]
unsafe extern "C-unwind" fn pgturso_stream_truncate(
    ctx: *mut pg_sys::LogicalDecodingContext,
    txn: *mut pg_sys::ReorderBufferTXN,
    nrelations: i32,
    relations: *mut pg_sys::Relation,
    change: *mut pg_sys::ReorderBufferChange,
) {
    // SAFETY: `relations` holds `nrelations` open relations; `change->txn` as above.
    unsafe {
        let state = state(ctx);
        let tables = truncated_tables(state, top_xid(txn), nrelations, relations);
        let sub = (*(*change).txn).xid.into_inner();
        let result = state.replicator.stream_truncate(top_xid(txn), sub, &tables);
        ok_or_raise(result, &state.options);
    }
}
