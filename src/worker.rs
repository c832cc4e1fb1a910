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
//! stopped or dropped, or the extension is gone, in which case it exits for good.

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

/// How long an idle worker waits before it looks for new WAL again.
const IDLE_WAIT: Duration = Duration::from_millis(50);
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
        .set_extra(&format!("{dboid} {xid}"))
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

/// The worker's entry point, named in its registration.
#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn pgturso_worker_main(arg: pg_sys::Datum) {
    // SAFETY: the argument is the int4 given at registration.
    let id = unsafe { i32::from_polymorphic_datum(arg, false, pg_sys::INT4OID) }.unwrap_or(0);
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP);
    // SAFETY: PostgreSQL's own handler: SIGTERM becomes a FATAL at the next interrupt check,
    // which every wait of pgturso's HTTP client makes.
    unsafe { pg_sys::pqsignal(pg_sys::SIGTERM as i32, Some(postgres::die)) };
    let extra = BackgroundWorker::get_extra();
    let mut parts = extra.split(' ').map(|p| p.parse::<i64>().unwrap_or(0));
    let (dboid, xid) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(pg_sys::Oid::from(dboid as u32)), None);
    // Named in pg_stat_activity, so that turso_stop and the status view find this very worker.
    BackgroundWorker::transaction(|| {
        Spi::run(&format!(
            "SET application_name = 'pgturso publication {id}'"
        ))
        .expect("SET application_name");
    });
    // The row (or its `enabled`) is written by the transaction that launched this worker: wait
    // until that one has ended, so that the first step sees what it wrote.
    while BackgroundWorker::transaction(|| {
        Spi::get_one_with_args::<String>(
            "SELECT pg_catalog.pg_xact_status($1::text::xid8)",
            &[xid.into()],
        )
        .ok()
        .flatten()
            == Some("in progress".into())
    }) {
        if !BackgroundWorker::wait_latch(Some(IDLE_WAIT)) {
            return;
        }
        pg_sys::check_for_interrupts!();
    }
    let mut backoff = Duration::from_secs(1);
    loop {
        let replicated = BackgroundWorker::transaction(|| step(id));
        let wait = match replicated {
            // Stopped, dropped, or the extension is gone: exit for good (code 0).
            None => return,
            Some(n) if n < 0 => {
                let wait = backoff;
                backoff = (backoff * 2).min(Duration::from_secs(30));
                wait
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

/// One step: `Some(transactions replicated)`, `Some(-1)` after an error (recorded in the row),
/// `None` when the worker has nothing left to do.
fn step(id: i32) -> Option<i64> {
    let installed = Spi::get_one::<bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'pgturso')",
    )
    .ok()
    .flatten()
    .unwrap_or(false);
    if !installed {
        return None;
    }
    let n = Spi::get_one_with_args::<i64>(
        "SELECT pgturso._publication_step($1, $2)",
        &[id.into(), STEP_TXNS.into()],
    )
    .ok()
    .flatten()?;
    (n >= -1).then_some(n)
}
