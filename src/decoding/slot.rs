//! Creating a logical replication slot from inside a SQL function.
//!
//! `pg_create_logical_replication_slot` may, while it looks for its start point, replay the
//! invalidations of a concurrent transaction in an internal subtransaction
//! (`ReorderBufferImmediateInvalidation`), which leaves `CurrentResourceOwner` at the top
//! transaction's. Called from a plpgsql statement, that statement's executor then releases its
//! snapshot under the wrong owner and fails with `snapshot reference … is not owned by resource
//! owner TopTransaction`, depending on what else the server runs at that moment. Called through
//! [`create_logical_slot`], the caller's resource owner is put back afterwards, as
//! `pg_logical_slot_get_changes` does around its own decoding (logicalfuncs.c).

use std::ffi::CString;

use pgrx::pg_sys;

/// Creates the logical slot `name` of the plugin pgturso; a failover slot when `failover`
/// (PostgreSQL 17 and later, where it is ignored otherwise).
pub fn create_logical_slot(name: &str, failover: bool) {
    // The built-in function by its C name: the same on every version (17 added `failover`).
    // SAFETY: a lookup in the table of built-in functions.
    let function =
        unsafe { pg_sys::fmgr_internal_function(c"pg_create_logical_replication_slot".as_ptr()) };
    assert!(
        function != pg_sys::InvalidOid,
        "pg_create_logical_replication_slot is built in"
    );
    #[cfg(not(any(feature = "pg17", feature = "pg18")))]
    let _ = failover;
    // SAFETY: a plain function call through the function manager with arguments of the declared
    // types (name, name, then booleans); the resource owner is the caller's again afterwards.
    unsafe {
        let owner = pg_sys::CurrentResourceOwner;
        let slot = name_datum(name);
        let plugin = name_datum("pgturso");
        let no = pg_sys::Datum::from(false);
        #[cfg(any(feature = "pg17", feature = "pg18"))]
        pg_sys::OidFunctionCall5Coll(
            function,
            pg_sys::InvalidOid,
            slot,
            plugin,
            no,
            no,
            pg_sys::Datum::from(failover),
        );
        #[cfg(not(any(feature = "pg17", feature = "pg18")))]
        pg_sys::OidFunctionCall4Coll(function, pg_sys::InvalidOid, slot, plugin, no, no);
        pg_sys::CurrentResourceOwner = owner;
    }
}

/// A `name` datum (palloc'd in the current memory context) holding `s`, cut at NAMEDATALEN.
///
/// # Safety
/// Inside a transaction, with a current memory context.
unsafe fn name_datum(s: &str) -> pg_sys::Datum {
    let text = CString::new(s).unwrap_or_default();
    // SAFETY: palloc0 returns zeroed memory of NameData's size; namestrcpy writes at most
    // NAMEDATALEN bytes into it, terminated.
    unsafe {
        let name =
            pg_sys::palloc0(std::mem::size_of::<pg_sys::NameData>()) as *mut pg_sys::NameData;
        pg_sys::namestrcpy(name, text.as_ptr());
        pg_sys::Datum::from(name)
    }
}

/// Writes a record of the running transactions into the WAL, as the background writer does every
/// 15 seconds (and `pg_log_standby_snapshot()` on PostgreSQL 16 and later).
///
/// Decoding can restart only from such a record: a slot's `restart_lsn` moves up only when
/// decoding passes one and the slot is then confirmed past it. Between two of the background
/// writer's, every decoding call reads again (and throws away) all the WAL since the last one, up
/// to 15 seconds of a busy server's WAL for a worker that decodes every few milliseconds. A
/// worker that logs one when its slot's restart point is far behind keeps that re-reading short.
pub fn log_running_transactions() {
    // SAFETY: a WAL insertion PostgreSQL makes from any backend (the background writer's and
    // pg_log_standby_snapshot's); the server runs with wal_level logical, as a slot requires.
    unsafe { pg_sys::LogStandbySnapshot() };
}
