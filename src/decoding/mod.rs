//! The PostgreSQL side, and the only home of raw pointers and unsafe code: the output plugin's
//! callbacks, tuples turned into owned rows, datums into values, the WAL reader, and which tables
//! publications hold.

pub mod convert;
pub(crate) mod filter;
pub(crate) mod plugin;
pub(crate) mod progress;
pub(crate) mod publication;
pub(crate) mod slot;
pub(crate) mod tuple;
pub(crate) mod wal;

/// What a relcache invalidation means for a per-relation cache: `relid`'s entry goes, or every
/// entry for `InvalidOid` (all relations).
pub(crate) fn forget<V>(
    cache: &mut std::collections::HashMap<pgrx::pg_sys::Oid, V>,
    relid: pgrx::pg_sys::Oid,
) {
    if relid == pgrx::pg_sys::InvalidOid {
        cache.clear();
    } else {
        cache.remove(&relid);
    }
}
