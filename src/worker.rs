//! The background worker of a publication (`turso_start`): replicates it continuously.
//!
//! One dynamic background worker per row of `pgturso.publications`, connected to its database as
//! the bootstrap superuser. Each step is one transaction that calls `pgturso._publication_step`:
//! a decoding call of the publication's slot with `publication_names` (exactly once, the slot
//! advances only past what Turso committed), which records its outcome in the row and returns the
//! number of transactions replicated. After a step that found nothing the worker waits on its
//! latch briefly; after a failed step it backs off (1 s doubling to 30 s). SIGTERM (`turso_stop`,
//! `pg_terminate_backend`, shutdown) stops it through PostgreSQL's own `die`, at once even while a
//! request is in flight; PostgreSQL then starts it again after 5 s unless the replication was
//! stopped or dropped, or the extension is gone, in which case it exits for good (after
//! `DROP EXTENSION` dropping its slot first, which nothing else would use again). A worker that
//! PostgreSQL restarts after `DROP DATABASE … WITH (FORCE)` terminated it finds its database gone
//! and exits for good too, instead of failing to connect every 5 seconds.
//!
//! Dynamic workers do not survive a restart of PostgreSQL. With `pgturso` in
//! `shared_preload_libraries`, a launcher runs once the server accepts connections: it starts a
//! short-lived starter in every database that allows connections, which starts the worker of
//! every replication there that is not stopped.

use std::time::Duration;

use pgrx::bgworkers::{
    BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime, SignalWakeFlags,
};
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;

mod postgres {
    extern "C-unwind" {
        /// tcop/tcopprot.h: the SIGTERM handler of backends (pgrx binds only a Rust wrapper).
        pub fn die(signal: std::ffi::c_int);
    }
}

/// The workers' `bgw_type`, as `pg_stat_activity.backend_type` shows it.
pub(crate) const WORKER_TYPE: &str = "pgturso publication";

/// Registers the launcher when loaded through `shared_preload_libraries`.
#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    // SAFETY: reads a flag PostgreSQL sets while it loads the preloaded libraries.
    if unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        BackgroundWorkerBuilder::new("pgturso launcher")
            .set_type("pgturso launcher")
            .set_library("pgturso")
            .set_function("pgturso_launcher_main")
            .enable_spi_access()
            .set_start_time(BgWorkerStartTime::RecoveryFinished)
            .set_restart_time(Some(Duration::from_secs(10)))
            .load();
    }
}

/// The launcher: one starter per database that allows connections, one after another; then it
/// exits for good.
#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn pgturso_launcher_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    // pg_database is shared: any database shows all of them.
    BackgroundWorker::connect_worker_to_spi(Some("postgres"), None);
    let databases = BackgroundWorker::transaction(|| {
        crate::spi::one::<Vec<i64>>(
            "SELECT array_agg(oid::int8) FROM pg_catalog.pg_database WHERE datallowconn AND NOT datistemplate",
            &[],
        )
        .unwrap_or_default()
    });
    for db in databases {
        let starter = BackgroundWorkerBuilder::new(&format!("pgturso starter {db}"))
            .set_type("pgturso starter")
            .set_library("pgturso")
            .set_function("pgturso_starter_main")
            .set_argument(db.into_datum())
            .enable_spi_access()
            .set_start_time(BgWorkerStartTime::RecoveryFinished)
            // SAFETY: reads this process's id, to be told when the starter is done.
            .set_notify_pid(unsafe { pg_sys::MyProcPid })
            .load_dynamic();
        if let Ok(starter) = starter {
            let _ = starter.wait_for_shutdown();
        }
        if BackgroundWorker::sigterm_received() {
            return;
        }
    }
}

/// A starter: in its database, starts the worker of every replication that is not stopped and
/// has none (none has, after a restart); a database without pgturso has nothing to start.
#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn pgturso_starter_main(arg: pg_sys::Datum) {
    // SAFETY: the argument is the int8 given at registration.
    let db = unsafe { i64::from_polymorphic_datum(arg, false, pg_sys::INT8OID) }.unwrap_or(0);
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(pg_sys::Oid::from(db as u32)), None);
    BackgroundWorker::transaction(|| {
        let installed = crate::spi::one::<bool>(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'pgturso')",
            &[],
        )
        .unwrap_or(false);
        if installed {
            Spi::run(
                "SELECT pgturso._launch(p.id, 0) FROM pgturso.publications p
                  WHERE p.enabled AND NOT EXISTS (SELECT 1 FROM pgturso._workers(p.id))",
            )
            .expect("starting the workers");
        }
    });
}

/// How long an idle worker waits before it looks for new WAL again.
const IDLE_WAIT: Duration = Duration::from_millis(50);
/// How often an idle worker runs a full step even though no WAL was flushed.
const IDLE_CHECK: Duration = Duration::from_secs(1);
/// How often a new worker looks whether the transaction that launched it has ended (`turso_start`
/// returns at once, and replication should too).
const LAUNCH_WAIT: Duration = Duration::from_millis(5);
/// The first key of the advisory lock a worker holds on its replication (`pg_locks.classid`; the
/// second is the replication's id): "pgtu".
const WORKER_LOCK_CLASS: i32 = 0x7067_7475;
/// Transactions per step at most, so that the row's figures move during a long catch-up.
const STEP_TXNS: i32 = 10_000;

#[pg_schema]
mod pgturso {
    use pgrx::bgworkers::BackgroundWorkerBuilder;
    use pgrx::prelude::*;

    /// Internal: starts the worker of publication replication `id` (see `turso_start`) and
    /// returns its process id. The worker waits until transaction `xid` (the caller's, which
    /// wrote the replication's row) has ended.
    #[pg_extern]
    fn _launch(id: i32, xid: i64) -> i32 {
        super::launch(
            id,
            xid,
            BackgroundWorkerBuilder::new(&format!("pgturso publication {id}")),
        )
    }
}

fn launch(id: i32, xid: i64, builder: BackgroundWorkerBuilder) -> i32 {
    // SAFETY: reads this backend's database, set at connection.
    let dboid = unsafe { pg_sys::MyDatabaseId }.to_u32();
    let worker = builder
        .set_type(WORKER_TYPE)
        .set_library("pgturso")
        .set_function("pgturso_worker_main")
        .set_argument(id.into_datum())
        .set_extra(&format!(
            "{dboid} {xid} {}",
            slot_of(id).unwrap_or_default()
        ))
        .enable_spi_access()
        .set_start_time(BgWorkerStartTime::RecoveryFinished)
        // SAFETY: reads this backend's process id; the postmaster tells it when the worker runs.
        .set_notify_pid(unsafe { pg_sys::MyProcPid })
        .set_restart_time(Some(Duration::from_secs(5)))
        .load_dynamic();
    let pid = worker.ok().and_then(|w| w.wait_for_startup().ok());
    let Some(pid) = pid else {
        ErrorReport::new(
            PgSqlErrorCode::ERRCODE_CONFIGURATION_LIMIT_EXCEEDED,
            "could not start the background worker of the replication",
            "turso_start",
        )
        .set_hint("Raise max_worker_processes (each running replication takes one worker) and restart PostgreSQL.")
        .report(PgLogLevel::ERROR);
        unreachable!("an ERROR report does not return")
    };
    pid
}

/// PostgreSQL's `pqsignal`, which PostgreSQL 18 turned into a macro for `pqsignal_be`.
#[cfg(not(feature = "pg18"))]
use pg_sys::pqsignal;
#[cfg(feature = "pg18")]
use pg_sys::pqsignal_be as pqsignal;

/// The worker's entry point, named in its registration.
#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn pgturso_worker_main(arg: pg_sys::Datum) {
    // SAFETY: the argument is the int4 given at registration.
    let id = unsafe { i32::from_polymorphic_datum(arg, false, pg_sys::INT4OID) }.unwrap_or(0);
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP);
    // SAFETY: PostgreSQL's own handler: SIGTERM becomes a FATAL at the next interrupt check,
    // which every wait of pgturso's HTTP client makes.
    unsafe { pqsignal(pg_sys::SIGTERM as i32, Some(postgres::die)) };
    // "{dboid} {xid} {slot}": the slot is known from the start, as DROP EXTENSION may come
    // before the first step.
    let extra = BackgroundWorker::get_extra();
    let mut parts = extra.split(' ');
    let mut number = || {
        parts
            .next()
            .and_then(|p| p.parse::<i64>().ok())
            .unwrap_or(0)
    };
    let (dboid, xid) = (number(), number());
    let mut slot = parts.next().filter(|s| !s.is_empty()).map(str::to_string);
    if !database_exists(dboid as u32) {
        pgrx::log!(
            "pgturso: database {dboid} of publication replication {id} no longer exists: its worker stops"
        );
        return;
    }
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(pg_sys::Oid::from(dboid as u32)), None);
    // One worker per replication. PostgreSQL starts a terminated worker again 5 s later, and
    // turso_stop then turso_start within those 5 s launch a second one: the one that does not
    // get the replication's lock (held until its process ends) leaves for good.
    let mine = BackgroundWorker::transaction(|| {
        crate::spi::one::<bool>(
            "SELECT pg_catalog.pg_try_advisory_lock($1, $2)",
            &[WORKER_LOCK_CLASS.into(), id.into()],
        ) == Some(true)
    });
    if !mine {
        pgrx::log!(
            "pgturso: another worker replicates publication replication {id} of database {dboid}: this one stops"
        );
        return;
    }
    // Named in pg_stat_activity, so that turso_stop and the status view find this very worker.
    BackgroundWorker::transaction(|| {
        Spi::run(&format!(
            "SET application_name = 'pgturso publication {id}'"
        ))
        .expect("SET application_name");
    });
    // The row (or its `enabled`) is written by the transaction that launched this worker: wait
    // until that one has ended, so that the first step sees what it wrote (none for a starter).
    while xid > 0
        && BackgroundWorker::transaction(|| {
            crate::spi::one::<String>(
                "SELECT pg_catalog.pg_xact_status($1::text::xid8)",
                &[xid.into()],
            ) == Some("in progress".into())
        })
    {
        if !BackgroundWorker::wait_latch(Some(LAUNCH_WAIT)) {
            return;
        }
        pg_sys::check_for_interrupts!();
    }
    let mut backoff = Duration::from_secs(1);
    // After a step that found nothing: the WAL flushed before it, and when it ran. Until more is
    // flushed there is nothing to decode, and no transaction is needed to know it (every event a
    // step reacts to writes WAL: a change, ALTER PUBLICATION, new credential functions, DROP
    // EXTENSION); a full step still runs every IDLE_CHECK.
    let mut idle: Option<(u64, std::time::Instant)> = None;
    loop {
        if BackgroundWorker::sighup_received() {
            // pg_reload_conf(): settings such as pgturso.group_max_ms apply from the next step.
            // SAFETY: what every process does on SIGHUP, outside any transaction.
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
        }
        if let Some((flushed, at)) = idle {
            if crate::decoding::wal::flushed() == flushed && at.elapsed() < IDLE_CHECK {
                if !BackgroundWorker::wait_latch(Some(IDLE_WAIT)) {
                    return; // the postmaster died
                }
                pg_sys::check_for_interrupts!();
                continue;
            }
        }
        let flushed = crate::decoding::wal::flushed();
        let known = slot.clone();
        let (replicated, seen) = BackgroundWorker::transaction(move || step(id, known));
        slot = seen;
        idle = (replicated == Some(0)).then(|| (flushed, std::time::Instant::now()));
        let wait = match replicated {
            // Stopped, dropped, or the extension is gone: exit for good (code 0).
            None => return,
            Some(n) if n < 0 => {
                let wait = backoff;
                // Turso unreachable or busy (-3): retried at least every 5 s, so that
                // replication resumes soon after an outage; other errors back off to 30 s.
                let cap = Duration::from_secs(if n == -3 { 5 } else { 30 });
                backoff = (backoff * 2).min(cap);
                wait.min(cap)
            }
            Some(n) => {
                backoff = Duration::from_secs(1);
                if n > 0 {
                    Duration::ZERO
                } else {
                    IDLE_WAIT
                }
            }
        };
        if !wait.is_zero() && !BackgroundWorker::wait_latch(Some(wait)) {
            return; // the postmaster died
        }
        pg_sys::check_for_interrupts!();
    }
}

/// One step: `Some(transactions replicated)`, `Some(-1)` after an error or `Some(-3)` while Turso
/// is unreachable or busy (recorded in the row),
/// `None` when the worker has nothing left to do; with the replication's slot name, read once.
fn step(id: i32, mut slot: Option<String>) -> (Option<i64>, Option<String>) {
    let installed = crate::spi::one::<bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'pgturso')",
        &[],
    )
    .unwrap_or(false);
    if !installed {
        // DROP EXTENSION took the replication's state: its slot would only hold WAL back.
        if let Some(name) = &slot {
            let _ = Spi::run_with_args(
                "SELECT pg_catalog.pg_drop_replication_slot(s.slot_name)
                   FROM pg_catalog.pg_replication_slots s WHERE s.slot_name = $1 AND NOT s.active",
                &[name.as_str().into()],
            );
        }
        return (None, slot);
    }
    if slot.is_none() {
        slot = slot_of(id);
    }
    let n = crate::spi::one::<i64>(
        "SELECT pgturso._publication_step($1, $2)",
        &[id.into(), STEP_TXNS.into()],
    );
    (n.filter(|&n| n >= -1 || n == -3), slot)
}

/// Whether database `dboid` still has its directory, under `base/` or a tablespace's
/// (`pg_tblspc/<oid>/<version>/`); a backend's working directory is the data directory. Read
/// before connecting, since a connection to a database that is gone is a FATAL error.
fn database_exists(dboid: u32) -> bool {
    let name = dboid.to_string();
    if std::path::Path::new("base").join(&name).is_dir() {
        return true;
    }
    let dirs = |p: &std::path::Path| {
        std::fs::read_dir(p)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .collect::<Vec<_>>()
    };
    dirs(std::path::Path::new("pg_tblspc"))
        .iter()
        .flat_map(|spc| dirs(spc))
        .any(|version| version.join(&name).is_dir())
}

/// The slot of publication replication `id`, as its row names it (a name has no spaces).
fn slot_of(id: i32) -> Option<String> {
    crate::spi::one::<String>(
        "SELECT slot FROM pgturso.publications WHERE id = $1",
        &[id.into()],
    )
}
