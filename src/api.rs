//! SQL-callable Rust entry points behind the plpgsql API in `sql/pgturso.sql`.
//!
//! `pgturso._sync_rows` streams the rows of queries over one relation into ONE Turso transaction:
//! optionally emptying the Turso table first (initial copy, view without unique key), then
//! deleting by key the rows of `delete_query` and upserting the rows of `upsert_query` (view diffs),
//! and, for the initial copy of a new slot, deleting that slot's progress row.
//! Rows are read through an SPI cursor in batches, so memory stays bounded for any size.

use pgrx::prelude::*;

extension_sql_file!("../sql/pgturso.sql", name = "pgturso_api", finalize);

#[pg_schema]
mod pgturso {
    use std::time::Duration;

    use pgrx::prelude::*;

    use crate::apply::replicator::Replicator;
    use crate::decoding::progress::CopyProgress;
    use crate::decoding::tuple;
    use crate::error::{redact, PgTursoError};
    use crate::model::{Cell, RowChange};
    use crate::options::Limits;
    use crate::turso::client::HttpTransport;

    const BATCH: i64 = 2000;

    /// Internal: `pgturso._create_slot`, which names the arguments for this PostgreSQL.
    #[pg_extern]
    fn _create_logical_slot(slot: &str, failover: bool) {
        crate::decoding::slot::create_logical_slot(slot, failover);
    }

    /// Internal: the next decoding call of `slot` in this session may use `group_commit`
    /// (`pgturso._decode_tables` peeks, then advances the slot itself).
    #[pg_extern]
    fn _arm_group_commit(slot: &str) {
        crate::decoding::plugin::arm_group_commit(slot);
    }

    /// Internal: a record of the running transactions in the WAL, so that a slot whose restart
    /// point trails far behind can move it up (see `decoding::slot::log_running_transactions`).
    #[pg_extern]
    fn _log_running_transactions() {
        crate::decoding::slot::log_running_transactions();
    }

    fn check_interrupts() {
        pgrx::pg_sys::check_for_interrupts!();
    }

    /// Internal: use `turso_replicate_table` / `turso_replicate_mv`. Returns the rows sent and
    /// the snapshot the rows of `upsert_query` were read with (`xmin:xmax:xip,...`). With
    /// `columns` (a publication's column list), only those columns, which the queries select in
    /// the table's order. `progress`: for a publication's copy, `{publication oid, this table's
    /// number, the number of tables}`, shown with the copy's progress (see `CopyProgress`).
    // The arguments are those of a SQL function its callers in the extension's SQL name.
    #[allow(clippy::too_many_arguments)]
    #[pg_extern]
    fn _sync_rows(
        rel: pg_sys::Oid,
        url: &str,
        token: Option<&str>,
        replace: bool,
        delete_query: Option<&str>,
        upsert_query: &str,
        reset_slot: default!(Option<&str>, "NULL"),
        columns: default!(Option<Vec<String>>, "NULL"),
        progress: default!(Option<Vec<i64>>, "NULL"),
    ) -> TableIterator<'static, (name!(rows, i64), name!(snapshot, String))> {
        let token = token.filter(|t| !t.is_empty());
        let secrets: Vec<&str> = token.into_iter().collect();
        let fail = |msg: String| -> ! {
            ereport!(
                ERROR,
                PgSqlErrorCode::ERRCODE_EXTERNAL_ROUTINE_EXCEPTION,
                redact(&msg, &secrets)
            );
        };
        let options = crate::options::parse(&[
            ("url".to_string(), Some(url.to_string())),
            ("auth".to_string(), token.map(str::to_string)),
        ])
        .unwrap_or_else(|e| fail(e.to_string()));
        let mut info = tuple::rel_info_by_oid(rel).unwrap_or_else(|e| fail(e));
        // A publication's column list: only those columns, which the query selects in order.
        if let Some(columns) = &columns {
            let narrowed = info.only(columns).unwrap_or_else(|e| fail(e.to_string()));
            info = std::rc::Rc::new(narrowed);
        }
        let transport = HttpTransport::new(
            options.base_url.clone(),
            None,
            options.token.as_deref(),
            Duration::from_millis(crate::options::DEFAULT_TIMEOUT_MS),
            check_interrupts,
        );
        // SAFETY: reads a value set at startup.
        let system_id = unsafe { pg_sys::GetSystemIdentifier() }.to_string();
        let mut r = Replicator::new(transport, system_id, String::new(), Limits::default())
            .with_source_name(crate::decoding::tuple::turso_name_of);
        // Shown in pg_stat_progress_copy (and turso_replication_status) from before the first
        // request to Turso.
        let progress = CopyProgress::start(rel, progress.as_deref().unwrap_or_default());
        let run = |r: &mut Replicator<HttpTransport>| -> Result<(i64, String), PgTursoError> {
            let table = &info.table;
            let mut sent = 0i64;
            r.begin_untracked();
            if let Some(slot) = reset_slot {
                r.reset_progress(slot)?;
            }
            if replace {
                r.truncate(std::slice::from_ref(table))?;
            }
            let mut apply = |query: &str, delete: bool| {
                tuple::for_each_batch(query, BATCH, |tupdesc, rows| {
                    for &row in rows {
                        // SAFETY: the query returns rows shaped like the relation (checked inside).
                        let cells: Vec<Cell> = unsafe { tuple::query_cells(&info, tupdesc, row) }?;
                        let change = if delete {
                            RowChange::Delete { old: Some(cells) }
                        } else {
                            RowChange::Insert { new: cells }
                        };
                        r.change(table, change)?;
                        sent += 1;
                    }
                    progress.rows(sent);
                    Ok::<(), PgTursoError>(())
                })
            };
            if let Some(q) = delete_query {
                apply(q, true)?;
            }
            let snapshot = apply(upsert_query, false)?;
            r.commit()?;
            Ok((sent, snapshot))
        };
        match run(&mut r) {
            Ok(row) => TableIterator::once(row),
            Err(e) => {
                e.into_report(&secrets, "_sync_rows")
                    .report(PgLogLevel::ERROR);
                unreachable!("an ERROR report does not return")
            }
        }
    }
}
