//! `publication_names`: which tables the named publications hold, and which kinds of change they
//! publish, looked up in the catalogs the way pgoutput does (`FOR TABLE`, `FOR TABLES IN SCHEMA`,
//! `FOR ALL TABLES`; a partition through its own membership or an ancestor's). Cached per relation
//! until PostgreSQL invalidates the relation or any publication.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::rc::Rc;

use pgrx::pg_sys;

use crate::decoding::filter::Prepared;

/// The kinds of change a relation's publications publish, as which relation, and which columns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Actions {
    pub insert: bool,
    pub update: bool,
    pub delete: bool,
    pub truncate: bool,
    /// For a partition that a publication with `publish_via_partition_root` holds through an
    /// ancestor: the top-most such ancestor, whose Turso table its changes go to (pgoutput's
    /// `publish_as_relid`).
    pub root: Option<pg_sys::Oid>,
    /// A publication holding the relation publishes through the partition root.
    pub via_root: bool,
    /// The publications' column list (`FOR TABLE t (a, b)`), by column name; `None` for every
    /// column.
    pub columns: Option<Rc<[String]>>,
    /// The publications' row filters; `None` when no publication holding the table has one.
    pub filters: Option<Rc<Filters>>,
}

/// The row filters (`FOR TABLE t WHERE (…)`) of the publications that hold a relation, per kind
/// of change, as pgoutput combines them: a change passes when it passes any filter of a
/// publication that publishes its kind; a kind that a publication without a filter publishes
/// has none (`None`).
#[derive(Debug)]
pub struct Filters {
    /// The relation the filters were written for (the expressions' columns are its columns):
    /// the table, or the partition ancestor the publications name.
    pub relid: pg_sys::Oid,
    pub insert: Option<Prepared>,
    pub update: Option<Prepared>,
    pub delete: Option<Prepared>,
}

impl PartialEq for Filters {
    /// The same filters object (each is prepared from the catalogs once).
    fn eq(&self, other: &Filters) -> bool {
        std::ptr::eq(self, other)
    }
}

impl Eq for Filters {}

/// The ancestors of partition `relid`, nearest first (empty for a relation that is no partition).
///
/// # Safety
/// Inside a transaction.
pub unsafe fn ancestors(relid: pg_sys::Oid) -> Vec<pg_sys::Oid> {
    // SAFETY: as the caller guarantees; the list is palloc'd in the current context.
    unsafe {
        let mut out = Vec::new();
        if pg_sys::get_rel_relispartition(relid) {
            let list = pg_sys::ffi::pg_guard_ffi_boundary(|| get_partition_ancestors(relid));
            if !list.is_null() {
                for i in 0..(*list).length as usize {
                    out.push((*(*list).elements.add(i)).oid_value);
                }
            }
        }
        out
    }
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
    if let Some(a) = CACHE.with(|c| c.borrow().get(&relid).cloned()) {
        return a;
    }
    // SAFETY: catalog lookups inside a transaction, as the caller guarantees.
    let a = unsafe { look_up(relid, names) };
    CACHE.with(|c| c.borrow_mut().insert(relid, a.clone()));
    a
}

/// `pg_publication_rel`'s `prqual` and `prattrs` (attribute numbers, the same in PostgreSQL
/// 15 to 18).
const ANUM_PRQUAL: i16 = 4;
const ANUM_PRATTRS: i16 = 5;

/// The column list publication `pubid` has for relation `relid`, as column names (`None`: every
/// column), and its row filter, as PostgreSQL's node text.
///
/// # Safety
/// As [`actions`].
unsafe fn membership(
    relid: pg_sys::Oid,
    pubid: pg_sys::Oid,
) -> (Option<Vec<String>>, Option<String>) {
    // SAFETY: a syscache lookup, released before returning; its values are copied out first.
    unsafe {
        let tup = pg_sys::SearchSysCache2(
            pg_sys::SysCacheIdentifier::PUBLICATIONRELMAP as i32,
            pg_sys::Datum::from(relid),
            pg_sys::Datum::from(pubid),
        );
        if tup.is_null() {
            return (None, None);
        }
        let attr = |attnum: i16| {
            let mut isnull = true;
            let d = pg_sys::SysCacheGetAttr(
                pg_sys::SysCacheIdentifier::PUBLICATIONRELMAP as i32,
                tup,
                attnum,
                &mut isnull,
            );
            (!isnull).then_some(d)
        };
        let filter = attr(ANUM_PRQUAL).map(|d| {
            let text = pg_sys::text_to_cstring(d.cast_mut_ptr());
            CStr::from_ptr(text).to_string_lossy().into_owned()
        });
        let columns = attr(ANUM_PRATTRS).map(|d| {
            // An int2vector: a one-dimensional int2 array.
            let arr = pg_sys::pg_detoast_datum(d.cast_mut_ptr()) as *mut pg_sys::int2vector;
            let n = (*arr).dim1 as usize;
            let attnums = (*arr).values.as_slice(n);
            attnums
                .iter()
                .filter_map(|&a| {
                    let n = pg_sys::get_attname(relid, a, true);
                    (!n.is_null()).then(|| CStr::from_ptr(n).to_string_lossy().into_owned())
                })
                .collect()
        });
        pg_sys::ReleaseSysCache(tup);
        (columns, filter)
    }
}

/// Raises pgoutput's ERROR for a table whose publications give it different column lists.
fn different_lists(relid: pg_sys::Oid) -> ! {
    let table = crate::decoding::tuple::display_name(relid);
    pgrx::pg_sys::panic::ErrorReport::new(
        pgrx::PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
        format!(
            "cannot use different column lists for table \"{table}\" in different publications"
        ),
        "pgturso",
    )
    .set_hint(
        "Give the table the same column list in every publication pgturso replicates, or none.",
    )
    .report(pgrx::PgLogLevel::ERROR);
    unreachable!("an ERROR report does not return")
}

/// # Safety
/// As [`actions`].
unsafe fn look_up(relid: pg_sys::Oid, names: &[String]) -> Actions {
    // SAFETY: as the caller guarantees; the lists are palloc'd in the current context.
    unsafe {
        // The relation and, for a partition, its ancestors: their own publications and their
        // schemas'.
        let mut rels = vec![relid];
        rels.extend(ancestors(relid));
        let mut member = Vec::new();
        for &r in &rels {
            member.push(pg_sys::GetRelationPublications(r));
            member.push(pg_sys::GetSchemaPublications(pg_sys::get_rel_namespace(r)));
        }
        let mut a = Actions::default();
        // Index in `rels` of the top-most ancestor a via-root publication holds.
        let mut top = 0;
        // Each holding publication's column list (None: all columns).
        let mut lists: Vec<Option<Vec<String>>> = Vec::new();
        // Each holding publication's actions and row filter (with the relation it is for).
        let mut quals: Vec<(pg_sys::PublicationActions, Option<(pg_sys::Oid, String)>)> =
            Vec::new();
        for name in names {
            let cname = CString::new(name.as_str()).unwrap_or_default();
            let p = pg_sys::GetPublicationByName(cname.as_ptr(), false);
            let holds_at = |i: usize| {
                (*p).alltables
                    || member[2 * i..2 * i + 2]
                        .iter()
                        .any(|&list| pg_sys::list_member_oid(list, (*p).oid))
            };
            if (0..rels.len()).any(holds_at) {
                // The list of the nearest relation the publication names itself (for a
                // partition, its own or an ancestor's); none for a schema or all-tables one.
                let own = rels
                    .iter()
                    .enumerate()
                    .find(|&(i, _)| pg_sys::list_member_oid(member[2 * i], (*p).oid));
                let (list, qual) = own.map_or((None, None), |(_, &r)| {
                    let (list, qual) = membership(r, (*p).oid);
                    (list, qual.map(|q| (r, q)))
                });
                lists.push(list);
                quals.push(((*p).pubactions, qual));
                let pa = (*p).pubactions;
                a.insert |= pa.pubinsert;
                a.update |= pa.pubupdate;
                a.delete |= pa.pubdelete;
                a.truncate |= pa.pubtruncate;
                if (*p).pubviaroot {
                    a.via_root = true;
                    if let Some(i) = (1..rels.len()).rev().find(|&i| holds_at(i)) {
                        top = top.max(i);
                    }
                }
            }
        }
        if top > 0 {
            a.root = Some(rels[top]);
        }
        if let Some(first) = lists.first() {
            if lists.iter().any(|l| l != first) {
                different_lists(relid);
            }
            a.columns = first.clone().map(Rc::from);
        }
        a.filters = combine(relid, &quals).map(Rc::new);
        a
    }
}

/// pgoutput's combination of the holding publications' row filters (see [`Filters`]).
fn combine(
    relid: pg_sys::Oid,
    quals: &[(pg_sys::PublicationActions, Option<(pg_sys::Oid, String)>)],
) -> Option<Filters> {
    let mut on = None;
    for (_, q) in quals {
        if let Some((r, _)) = q {
            if on.is_some_and(|o| o != *r) {
                let table = crate::decoding::tuple::display_name(relid);
                pgrx::pg_sys::panic::ErrorReport::new(
                    pgrx::PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                    format!("the row filters of table \"{table}\" are written for different relations of its partition tree"),
                    "pgturso",
                )
                .set_hint("Give the row filters on one table of the partition tree in every publication pgturso replicates (e.g. the partition root, with publish_via_partition_root).")
                .report(pgrx::PgLogLevel::ERROR);
            }
            on = Some(*r);
        }
    }
    let on = on?;
    let kind = |publishes: fn(&pg_sys::PublicationActions) -> bool| {
        let mut out = Vec::new();
        for (_, q) in quals.iter().filter(|(a, _)| publishes(a)) {
            match q {
                Some((_, text)) => out.push(text.clone()),
                None => return None,
            }
        }
        // SAFETY: inside the decoding callback that looks the publications up.
        (!out.is_empty()).then(|| unsafe { Prepared::new(&out) })
    };
    Some(Filters {
        relid: on,
        insert: kind(|a| a.pubinsert),
        update: kind(|a| a.pubupdate),
        delete: kind(|a| a.pubdelete),
    })
}
