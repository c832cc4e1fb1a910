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
