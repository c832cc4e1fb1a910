//! Progress of a copy into Turso (`turso_start`, a table joining a publication, the per-table
//! API), reported as PostgreSQL reports its own `COPY … TO`: one row in `pg_stat_progress_copy`
//! (command `COPY TO`, type `CALLBACK`, `relid` the table, `tuples_processed` the rows sent), with
//! pgturso's estimate of the table's rows in the tenth free parameter (`param11` of
//! `pg_stat_get_progress_info('COPY')`), which `turso_replication_status` shows.

use pgrx::pg_sys;

/// The parameter holding the estimate (0-based; the view's `param11`): past those
/// `pg_stat_progress_copy` shows.
const ESTIMATE_PARAM: i32 = 10;

/// A copy in progress; reported until dropped (or until the transaction aborts, which ends any
/// progress report).
pub(crate) struct CopyProgress(());

impl CopyProgress {
    /// Starts reporting the copy of `rel`, with PostgreSQL's estimate of its rows (the sum over
    /// its leaf partitions; -1 when the table was never analysed).
    pub(crate) fn start(rel: pg_sys::Oid) -> CopyProgress {
        let estimate = crate::spi::one::<i64>(
            "SELECT coalesce((SELECT sum(greatest(c.reltuples, 0))
                                FROM pg_catalog.pg_partition_tree($1) t
                                JOIN pg_catalog.pg_class c ON c.oid = t.relid
                               WHERE t.isleaf AND c.reltuples >= 0),
                             (SELECT c.reltuples FROM pg_catalog.pg_class c
                               WHERE c.oid = $1 AND c.reltuples >= 0),
                             -1)::int8",
            &[rel.into()],
        )
        .unwrap_or(-1);
        // SAFETY: plain writes to this backend's own progress slot in shared memory.
        unsafe {
            pg_sys::pgstat_progress_start_command(
                pg_sys::ProgressCommandType::PROGRESS_COMMAND_COPY,
                rel,
            );
            pg_sys::pgstat_progress_update_param(
                pg_sys::PROGRESS_COPY_COMMAND as i32,
                pg_sys::PROGRESS_COPY_COMMAND_TO as i64,
            );
            pg_sys::pgstat_progress_update_param(
                pg_sys::PROGRESS_COPY_TYPE as i32,
                pg_sys::PROGRESS_COPY_TYPE_CALLBACK as i64,
            );
            pg_sys::pgstat_progress_update_param(ESTIMATE_PARAM, estimate);
        }
        CopyProgress(())
    }

    /// `rows` rows have been sent so far.
    pub(crate) fn rows(&self, rows: i64) {
        // SAFETY: as in start.
        unsafe {
            pg_sys::pgstat_progress_update_param(
                pg_sys::PROGRESS_COPY_TUPLES_PROCESSED as i32,
                rows,
            )
        };
    }
}

impl Drop for CopyProgress {
    fn drop(&mut self) {
        // SAFETY: as in start.
        unsafe { pg_sys::pgstat_progress_end_command() };
    }
}
