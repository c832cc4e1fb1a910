//! `publication_names`: which tables the named publications hold, and which kinds of change they
//! publish, looked up in the catalogs the way pgoutput does (`FOR TABLE`, `FOR TABLES IN SCHEMA`,
//! `FOR ALL TABLES`; a partition through its own membership or an ancestor's). Cached per relation
//! until PostgreSQL invalidates the relation or any publication.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ffi::CString;

use pgrx::pg_sys;

/// The kinds of change a relation's publications publish.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Actions {
    pub insert: bool,
    pub update: bool,
    pub delete: bool,
    pub truncate: bool,
}

thread_local! {
    static CACHE: RefCell<HashMap<pg_sys::Oid, Actions>> = RefCell::new(HashMap::new());
    static REGISTERED: Cell<bool> = const { Cell::new(false) };
}

extern "C-unwind" {
    /// partition.h, which pgrx does not bind: the relation's ancestors, nearest first.
    fn get_partition_ancestors(relid: pg_sys::Oid) -> *mut pg_sys::List;
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn invalidate_relation(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    CACHE.with(|c| super::forget(&mut c.borrow_mut(), relid));
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn invalidate_all(_arg: pg_sys::Datum, _cache: i32, _hash: u32) {
    CACHE.with(|c| c.borrow_mut().clear());
}

/// Forgets every answer: a new decoding session may name other publications.
pub fn reset() {
    CACHE.with(|c| c.borrow_mut().clear());
}

/// What the publications `names` publish of relation `relid`; an ERROR names a publication that
/// does not exist.
///
/// # Safety
/// Inside a decoding callback (a transaction, with the historic catalog snapshot).
pub unsafe fn actions(relid: pg_sys::Oid, names: &[String]) -> Actions {
    if !REGISTERED.get() {
        // SAFETY: plain functions without argument; callbacks live as long as the backend.
        unsafe {
            pg_sys::CacheRegisterRelcacheCallback(Some(invalidate_relation), 0.into());
            for cache in [
                pg_sys::SysCacheIdentifier::PUBLICATIONOID,
                pg_sys::SysCacheIdentifier::PUBLICATIONRELMAP,
                pg_sys::SysCacheIdentifier::PUBLICATIONNAMESPACEMAP,
            ] {
                pg_sys::CacheRegisterSyscacheCallback(cache as i32, Some(invalidate_all), 0.into());
            }
        }
        REGISTERED.set(true);
    }
    if let Some(a) = CACHE.with(|c| c.borrow().get(&relid).copied()) {
        return a;
    }
    // SAFETY: catalog lookups inside a transaction, as the caller guarantees.
    let a = unsafe { look_up(relid, names) };
    CACHE.with(|c| c.borrow_mut().insert(relid, a));
    a
}

/// # Safety
/// As [`actions`].
unsafe fn look_up(relid: pg_sys::Oid, names: &[String]) -> Actions {
    // SAFETY: as the caller guarantees; the lists are palloc'd in the current context.
    unsafe {
        // The relation and, for a partition, its ancestors: their own publications and their
        // schemas'.
        let mut rels = vec![relid];
        if pg_sys::get_rel_relispartition(relid) {
            let ancestors = pg_sys::ffi::pg_guard_ffi_boundary(|| get_partition_ancestors(relid));
            if !ancestors.is_null() {
                for i in 0..(*ancestors).length as usize {
                    rels.push((*(*ancestors).elements.add(i)).oid_value);
                }
            }
        }
        let mut member = Vec::new();
        for &r in &rels {
            member.push(pg_sys::GetRelationPublications(r));
            member.push(pg_sys::GetSchemaPublications(pg_sys::get_rel_namespace(r)));
        }
        let mut a = Actions::default();
        for name in names {
            let cname = CString::new(name.as_str()).unwrap_or_default();
            let p = pg_sys::GetPublicationByName(cname.as_ptr(), false);
            let holds = (*p).alltables
                || member
                    .iter()
                    .any(|&list| pg_sys::list_member_oid(list, (*p).oid));
            if holds {
                let pa = (*p).pubactions;
                a.insert |= pa.pubinsert;
                a.update |= pa.pubupdate;
                a.delete |= pa.pubdelete;
                a.truncate |= pa.pubtruncate;
            }
        }
        a
    }
}
