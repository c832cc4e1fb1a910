//! Progress of a copy into Turso (`turso_start`, a table joining a publication, the per-table
//! API), reported as PostgreSQL reports its own `COPY … TO`: one row in `pg_stat_progress_copy`
//! (command `COPY TO`, type `CALLBACK`, `relid` the table, `tuples_processed` the rows sent). Past
//! the parameters that view shows, `pg_stat_get_progress_info('COPY')` holds pgturso's own, which
//! `turso_replication_status` shows: `param11` PostgreSQL's estimate of the table's rows (-1:
//! unknown), and for a publication's copy `param12` the publication's oid, `param13` the table's
//! number among the tables being copied and `param14` their number.

use pgrx::pg_sys;

/// The parameter holding the estimate (0-based; the view's `param11`), followed by the
/// publication's: past those `pg_stat_progress_copy` shows.
const ESTIMATE_PARAM: i32 = 10;

/// A copy in progress; reported until dropped (or until the transaction aborts, which ends any
/// progress report).
pub(crate) struct CopyProgress(());

impl CopyProgress {
    /// Starts reporting the copy of `rel`, with PostgreSQL's estimate of its rows (the sum over
    /// its leaf partitions; -1 when the table was never analysed) and `publication` (for a
    /// publication's copy: its oid, the table's number, the number of tables; else empty).
    pub(crate) fn start(rel: pg_sys::Oid, publication: &[i64]) -> CopyProgress {
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
            for (i, &v) in publication.iter().take(3).enumerate() {
                pg_sys::pgstat_progress_update_param(ESTIMATE_PARAM + 1 + i as i32, v);
            }
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
