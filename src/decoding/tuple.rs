//! Relation and tuple access: `Relation`/`HeapTuple` -> owned [`Table`] and [`Cell`]s.
//!
//! One of the two files with raw pointers. Relation descriptions are cached per backend and
//! dropped by a relcache invalidation callback, as pgoutput does, so DDL decoded between DML
//! is seen at the right point of the stream.

use std::cell::{Cell as StdCell, RefCell};
use std::collections::HashMap;
use std::ffi::CStr;
use std::rc::Rc;

use pgrx::pg_sys;

use crate::decoding::convert;
use crate::error::PgTursoError;
use crate::model::{Cell, Column, SqlType, Table, Value};

/// How to read one replicated column out of a tuple.
#[derive(Clone)]
struct ColumnReader {
    /// Index of the attribute in the tuple descriptor.
    att: usize,
    base_type: pg_sys::Oid,
    output_fn: pg_sys::Oid,
    varlena: bool,
    /// Arrays travel as JSON arrays (PostgreSQL's `array_to_json`).
    array: bool,
}

/// PostgreSQL's `AttrMissing` (tupdesc_details.h), opaque in the bindings: whether a column added
/// with a default has a value for rows written before, and that value.
#[repr(C)]
struct AttrMissing {
    am_present: bool,
    am_value: pg_sys::Datum,
}

/// A replicated relation: its Turso shape and how to read its tuples.
pub struct RelInfo {
    pub table: Table,
    /// The relation whose changes these are: the relation itself, or for the transient heap an
    /// `ALTER TABLE` rewrite fills (`pg_class.relrewrite`), the table being rewritten.
    pub relid: pg_sys::Oid,
    /// Set for such a transient heap: its own oid, which tells one rewrite from the next.
    pub rewrite: Option<u32>,
    /// The partitioned tables `relid` is a partition of, nearest first (none for other tables).
    pub ancestors: Vec<pg_sys::Oid>,
    readers: Vec<ColumnReader>,
}

impl RelInfo {
    /// This description narrowed to the columns `names` (a publication's column list), in the
    /// table's column order. The key must be among them, as PostgreSQL requires of a published
    /// replica identity: Turso's rows are identified by it.
    pub fn only(&self, names: &[String]) -> Result<RelInfo, PgTursoError> {
        let columns = &self.table.columns;
        let keep: Vec<usize> = (0..columns.len())
            .filter(|&i| names.contains(&columns[i].name))
            .collect();
        let left_out: Vec<String> = self
            .table
            .key
            .iter()
            .filter(|k| !keep.contains(k))
            .map(|&k| format!("\"{}\"", columns[k].name))
            .collect();
        if !left_out.is_empty() {
            return Err(PgTursoError::KeyNotPublished {
                table: self.table.display_name(),
                columns: left_out.join(", "),
            });
        }
        let mut table = self.table.clone();
        table.columns = keep.iter().map(|&i| columns[i].clone()).collect();
        table.key = self
            .table
            .key
            .iter()
            .filter_map(|k| keep.iter().position(|i| i == k))
            .collect();
        table.shape = Default::default();
        Ok(RelInfo {
            table,
            relid: self.relid,
            rewrite: self.rewrite,
            ancestors: self.ancestors.clone(),
            readers: keep.iter().map(|&i| self.readers[i].clone()).collect(),
        })
    }
}

thread_local! {
    static CACHE: RefCell<HashMap<pg_sys::Oid, Rc<RelInfo>>> = RefCell::new(HashMap::new());
    static CALLBACK_REGISTERED: StdCell<bool> = const { StdCell::new(false) };
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn invalidate(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    CACHE.with(|c| super::forget(&mut c.borrow_mut(), relid));
}

/// The cached description of `rel`, built on first use after any invalidation.
///
/// # Safety
/// `rel` must be a valid, open relation handed to an output plugin callback.
pub unsafe fn rel_info(rel: pg_sys::Relation) -> Result<Rc<RelInfo>, PgTursoError> {
    if !CALLBACK_REGISTERED.get() {
        // SAFETY: registering a plain function with no argument; callbacks live for the backend.
        unsafe { pg_sys::CacheRegisterRelcacheCallback(Some(invalidate), pg_sys::Datum::from(0)) };
        CALLBACK_REGISTERED.set(true);
    }
    // SAFETY: the caller guarantees `rel` is valid.
    let relid = unsafe { (*rel).rd_id };
    if let Some(info) = CACHE.with(|c| c.borrow().get(&relid).cloned()) {
        return Ok(info);
    }
    // SAFETY: as above.
    let info = Rc::new(unsafe { describe(rel) }?);
    CACHE.with(|c| c.borrow_mut().insert(relid, info.clone()));
    Ok(info)
}

fn name_str(name: &pg_sys::NameData) -> String {
    // SAFETY: NameData is a NUL-terminated fixed-size buffer.
    unsafe { CStr::from_ptr(name.data.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

/// The SQLite type for a (base) PostgreSQL type.
fn sql_type(base: pg_sys::Oid) -> SqlType {
    match base {
        pg_sys::INT2OID | pg_sys::INT4OID | pg_sys::INT8OID | pg_sys::OIDOID | pg_sys::BOOLOID => {
            SqlType::Integer
        }
        pg_sys::FLOAT4OID | pg_sys::FLOAT8OID => SqlType::Real,
        pg_sys::BYTEAOID => SqlType::Blob,
        _ => SqlType::Text,
    }
}

unsafe fn describe(rel: pg_sys::Relation) -> Result<RelInfo, PgTursoError> {
    // SAFETY: `rel` is valid (caller); rd_rel and rd_att are always set on an open relation.
    unsafe {
        // The transient heap of an ALTER TABLE rewrite has the new row type (same attribute
        // numbers); its name, key and identity are those of the table it replaces.
        let rewritten = (*(*rel).rd_rel).relrewrite;
        let original = if rewritten == pg_sys::InvalidOid {
            std::ptr::null_mut()
        } else {
            pg_sys::RelationIdGetRelation(rewritten)
        };
        let described = if original.is_null() { rel } else { original };
        let info = describe_as(rel, described);
        if !original.is_null() {
            pg_sys::RelationClose(original);
        }
        info
    }
}

/// A tuple descriptor's attributes. PostgreSQL 18 puts a compact array first and the full
/// attributes after it.
///
/// # Safety
/// `tupdesc` is a valid tuple descriptor that outlives the slice.
#[cfg(not(feature = "pg18"))]
unsafe fn attributes<'a>(tupdesc: pg_sys::TupleDesc) -> &'a [pg_sys::FormData_pg_attribute] {
    // SAFETY: as the caller guarantees.
    unsafe { (*tupdesc).attrs.as_slice((*tupdesc).natts as usize) }
}

/// A tuple descriptor's attributes. PostgreSQL 18 puts a compact array first and the full
/// attributes after it (its `TupleDescAttr`).
///
/// # Safety
/// `tupdesc` is a valid tuple descriptor that outlives the slice.
#[cfg(feature = "pg18")]
unsafe fn attributes<'a>(tupdesc: pg_sys::TupleDesc) -> &'a [pg_sys::FormData_pg_attribute] {
    // SAFETY: as the caller guarantees: natts compact attributes, then natts full ones.
    unsafe {
        let natts = (*tupdesc).natts as usize;
        let full = (*tupdesc).compact_attrs.as_ptr().add(natts).cast();
        std::slice::from_raw_parts(full, natts)
    }
}

/// `rel`'s columns and readers, with the name, key and identity of `named` (the same relation,
/// or the table a rewrite heap replaces).
unsafe fn describe_as(
    rel: pg_sys::Relation,
    named: pg_sys::Relation,
) -> Result<RelInfo, PgTursoError> {
    // SAFETY: both are valid open relations (caller).
    unsafe {
        let class = (*named).rd_rel;
        let pg_name = name_str(&(*class).relname);
        let ns = pg_sys::get_namespace_name((*class).relnamespace);
        let pg_schema = if ns.is_null() {
            String::new()
        } else {
            CStr::from_ptr(ns).to_string_lossy().into_owned()
        };
        let tupdesc = (*rel).rd_att;
        let natts = (*tupdesc).natts as usize;
        let attrs = attributes(tupdesc);
        let mut columns = Vec::new();
        let mut readers = Vec::new();
        // attnum (1-based) -> index in `columns`
        let mut by_attnum = vec![None; natts + 1];
        for (i, att) in attrs.iter().enumerate() {
            if att.attisdropped {
                continue;
            }
            let base = pg_sys::getBaseType(att.atttypid);
            let mut output_fn = pg_sys::InvalidOid;
            let mut varlena = false;
            pg_sys::getTypeOutputInfo(att.atttypid, &mut output_fn, &mut varlena);
            by_attnum[i + 1] = Some(columns.len());
            let reader = ColumnReader {
                att: i,
                base_type: base,
                output_fn,
                varlena: att.attlen == -1,
                array: att.attlen == -1 && pg_sys::get_element_type(base) != pg_sys::InvalidOid,
            };
            let constr = (*tupdesc).constr;
            let missing = if att.atthasmissing && !constr.is_null() && !(*constr).missing.is_null()
            {
                let m = &*((*constr).missing as *const AttrMissing).add(i);
                match m.am_present.then(|| read(&reader, m.am_value)) {
                    Some(Ok(Cell::Value(v))) => Some(v),
                    _ => None,
                }
            } else {
                None
            };
            columns.push(Column {
                name: name_str(&att.attname),
                sql_type: sql_type(base),
                not_null: att.attnotnull,
                attnum: att.attnum,
                missing,
            });
            readers.push(reader);
        }
        let replident = (*class).relreplident as u8;
        // Fills rd_pkindex and rd_replidindex.
        pg_sys::list_free(pg_sys::RelationGetIndexList(named));
        let (key_index, key_is_primary) =
            if replident == b'i' && (*named).rd_replidindex != pg_sys::InvalidOid {
                let rid = (*named).rd_replidindex;
                (rid, rid == (*named).rd_pkindex)
            } else if (*named).rd_pkindex != pg_sys::InvalidOid {
                ((*named).rd_pkindex, true)
            } else if (*class).relkind as u8 == pg_sys::RELKIND_MATVIEW {
                // A materialized view has no primary key; its unique index identifies rows.
                (unique_index(named), false)
            } else {
                (pg_sys::InvalidOid, false)
            };
        let key = if key_index == pg_sys::InvalidOid {
            Vec::new()
        } else {
            index_columns(key_index, &by_attnum)
        };
        Ok(RelInfo {
            table: Table {
                source: format!(
                    "{}.{}",
                    pg_sys::MyDatabaseId.to_u32(),
                    (*named).rd_id.to_u32()
                ),
                turso_name: Table::turso_name_for(&pg_schema, &pg_name),
                pg_schema,
                pg_name,
                columns,
                key_is_primary: key_is_primary && !key.is_empty(),
                key,
                identity_full: replident == b'f',
                shape: Default::default(),
            },
            relid: (*named).rd_id,
            rewrite: (named != rel).then(|| (*rel).rd_id.to_u32()),
            ancestors: crate::decoding::publication::ancestors((*named).rd_id),
            readers,
        })
    }
}

/// The first plain (no expressions, no predicate) unique index of `rel`, or InvalidOid.
unsafe fn unique_index(rel: pg_sys::Relation) -> pg_sys::Oid {
    // SAFETY: `rel` is open; index relcache entries are released before returning.
    unsafe {
        let list = pg_sys::RelationGetIndexList(rel);
        let mut found = pg_sys::InvalidOid;
        if !list.is_null() {
            for i in 0..(*list).length {
                let oid = pg_sys::list_nth_oid(list, i);
                let idx = pg_sys::RelationIdGetRelation(oid);
                if idx.is_null() {
                    continue;
                }
                let form = (*idx).rd_index;
                let plain = (*idx).rd_indexprs.is_null()
                    && (*idx).rd_indpred.is_null()
                    && pg_sys::heap_attisnull(
                        (*idx).rd_indextuple,
                        pg_sys::Anum_pg_index_indexprs as i32,
                        std::ptr::null_mut(),
                    )
                    && pg_sys::heap_attisnull(
                        (*idx).rd_indextuple,
                        pg_sys::Anum_pg_index_indpred as i32,
                        std::ptr::null_mut(),
                    );
                let usable = (*form).indisunique && (*form).indisvalid && plain;
                pg_sys::RelationClose(idx);
                if usable {
                    found = oid;
                    break;
                }
            }
            pg_sys::list_free(list);
        }
        found
    }
}

/// Column positions (in `columns`) of an index's key attributes.
unsafe fn index_columns(index: pg_sys::Oid, by_attnum: &[Option<usize>]) -> Vec<usize> {
    // SAFETY: the index exists in the historic catalog snapshot decoding runs under; the
    // relcache reference is released before returning.
    unsafe {
        let idx = pg_sys::RelationIdGetRelation(index);
        if idx.is_null() {
            return Vec::new();
        }
        let form = (*idx).rd_index;
        let n = (*form).indnkeyatts as usize;
        let attnums = (*form).indkey.values.as_slice(n);
        let cols = attnums
            .iter()
            .filter_map(|&a| by_attnum.get(a as usize).copied().flatten())
            .collect();
        pg_sys::RelationClose(idx);
        cols
    }
}

/// Every attribute of `tuple` as (values, nulls). A tuple written before an ADD COLUMN has fewer
/// attributes: the others get the column's "missing" value (its default then), as heap_getattr does.
unsafe fn deform(
    tupdesc: pg_sys::TupleDesc,
    tuple: pg_sys::HeapTuple,
) -> (Vec<pg_sys::Datum>, Vec<bool>) {
    // SAFETY: callers pass a valid tuple and its descriptor.
    unsafe {
        let natts = (*tupdesc).natts as usize;
        let mut values = vec![pg_sys::Datum::from(0); natts];
        let mut nulls = vec![true; natts];
        pg_sys::heap_deform_tuple(tuple, tupdesc, values.as_mut_ptr(), nulls.as_mut_ptr());
        let stored = ((*(*tuple).t_data).t_infomask2 as u32 & pg_sys::HEAP_NATTS_MASK) as usize;
        for att in stored..natts {
            values[att] = pg_sys::getmissingattr(tupdesc, att as i32 + 1, &mut nulls[att]);
        }
        (values, nulls)
    }
}

/// The replicated columns, reading column `i` from attribute `position(i)` of the deformed row.
unsafe fn read_cells(
    info: &RelInfo,
    values: &[pg_sys::Datum],
    nulls: &[bool],
    position: impl Fn(usize, &ColumnReader) -> usize,
) -> Result<Vec<Cell>, PgTursoError> {
    info.readers
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let att = position(i, r);
            if nulls[att] {
                return Ok(Cell::Value(Value::Null));
            }
            // SAFETY: a non-null value of the column's type, from the deformed tuple.
            unsafe { read(r, values[att]) }.map_err(|reason| PgTursoError::Value {
                table: info.table.display_name(),
                column: info.table.columns[i].name.clone(),
                reason,
            })
        })
        .collect()
}

/// The replicated columns of `tuple`, in `info.table.columns` order.
///
/// # Safety
/// `tuple` must be a valid heap tuple of the relation `info` describes, with descriptor `tupdesc`.
pub unsafe fn cells(
    info: &RelInfo,
    tupdesc: pg_sys::TupleDesc,
    tuple: pg_sys::HeapTuple,
) -> Result<Vec<Cell>, PgTursoError> {
    // SAFETY: caller guarantees the tuple matches the descriptor.
    unsafe {
        let (values, nulls) = deform(tupdesc, tuple);
        read_cells(info, &values, &nulls, |_, r| r.att)
    }
}

/// The columns of a query row whose columns are the relation's live columns in order
/// (`SELECT * FROM rel`): column `i` of the row is replicated column `i`.
///
/// # Safety
/// `tuple` must be a valid heap tuple with descriptor `tupdesc` having one attribute per
/// replicated column of `info`, in order.
pub unsafe fn query_cells(
    info: &RelInfo,
    tupdesc: pg_sys::TupleDesc,
    tuple: pg_sys::HeapTuple,
) -> Result<Vec<Cell>, PgTursoError> {
    // SAFETY: caller guarantees the tuple matches the descriptor.
    unsafe {
        let natts = (*tupdesc).natts as usize;
        if natts != info.readers.len() {
            return Err(PgTursoError::Value {
                table: info.table.display_name(),
                column: String::new(),
                reason: format!(
                    "the query returned {natts} columns, the relation has {}",
                    info.readers.len()
                ),
            });
        }
        let (mut values, nulls) = deform(tupdesc, tuple);
        // A query's row points into the TOAST table for a large value: unlike a decoded change,
        // whose such value is one the change left unchanged, the value is fetched here.
        for (i, r) in info.readers.iter().enumerate() {
            if r.varlena && !nulls[i] {
                let ptr = values[i].cast_mut_ptr::<pg_sys::varlena>();
                if pgrx::varlena::varatt_is_1b_e(ptr) {
                    values[i] = pg_sys::Datum::from(pg_sys::pg_detoast_datum_packed(ptr));
                }
            }
        }
        read_cells(info, &values, &nulls, |i, _| i)
    }
}

/// The description of the relation `relid`, opened and closed here.
pub fn rel_info_by_oid(relid: pg_sys::Oid) -> Result<Rc<RelInfo>, String> {
    // SAFETY: the relcache reference is released before returning.
    unsafe {
        let rel = pg_sys::RelationIdGetRelation(relid);
        if rel.is_null() {
            return Err(format!(
                "relation with OID {} does not exist",
                relid.to_u32()
            ));
        }
        let info = rel_info(rel);
        pg_sys::RelationClose(rel);
        info.map_err(|e| e.to_string())
    }
}

/// Runs `query` through an SPI cursor and hands its rows to `f` in batches of `batch` rows,
/// each batch converted inside a memory context that is reset afterwards. Returns the snapshot
/// the cursor read with, as `xmin:xmax:xip,...`.
pub fn for_each_batch<E>(
    query: &str,
    batch: i64,
    mut f: impl FnMut(pg_sys::TupleDesc, &[pg_sys::HeapTuple]) -> Result<(), E>,
) -> Result<String, E> {
    let sql = std::ffi::CString::new(query).expect("queries are built without NUL bytes");
    // SAFETY: standard SPI cursor protocol; every path that returns closes the cursor and
    // disconnects; an ERROR unwinds through PostgreSQL's own SPI cleanup at abort.
    unsafe {
        let cxt = pg_sys::AllocSetContextCreateInternal(
            pg_sys::CurrentMemoryContext,
            c"pgturso batch".as_ptr(),
            pg_sys::ALLOCSET_DEFAULT_MINSIZE as usize,
            pg_sys::ALLOCSET_DEFAULT_INITSIZE as usize,
            pg_sys::ALLOCSET_DEFAULT_MAXSIZE as usize,
        );
        pg_sys::SPI_connect();
        let plan = pg_sys::SPI_prepare(sql.as_ptr(), 0, std::ptr::null_mut());
        let portal = pg_sys::SPI_cursor_open(
            std::ptr::null(),
            plan,
            std::ptr::null_mut(),
            std::ptr::null(),
            true,
        );
        let snapshot = portal_snapshot(portal);
        let mut result = Ok(snapshot);
        loop {
            pg_sys::SPI_cursor_fetch(portal, true, batch);
            let n = pg_sys::SPI_processed as usize;
            let tt = pg_sys::SPI_tuptable;
            if n == 0 || tt.is_null() {
                break;
            }
            let rows = std::slice::from_raw_parts((*tt).vals, n);
            let old = pg_sys::CurrentMemoryContext;
            pg_sys::CurrentMemoryContext = cxt;
            let r = f((*tt).tupdesc, rows);
            pg_sys::CurrentMemoryContext = old;
            pg_sys::MemoryContextReset(cxt);
            pg_sys::SPI_freetuptable(tt);
            if let Err(e) = r {
                result = Err(e);
                break;
            }
        }
        pg_sys::SPI_cursor_close(portal);
        pg_sys::SPI_finish();
        pg_sys::MemoryContextDelete(cxt);
        result
    }
}

/// The snapshot a cursor reads with, as `xmin:xmax:xip,...` (top-level transaction ids).
unsafe fn portal_snapshot(portal: pg_sys::Portal) -> String {
    // SAFETY: an open SELECT cursor has a query descriptor holding its registered snapshot.
    unsafe {
        let qd = (*portal).queryDesc;
        if qd.is_null() || (*qd).snapshot.is_null() {
            return String::new();
        }
        let snap = (*qd).snapshot;
        // xip may be NULL when no transaction was running: never make a slice of a NULL pointer.
        let xip = if (*snap).xip.is_null() || (*snap).xcnt == 0 {
            &[][..]
        } else {
            std::slice::from_raw_parts((*snap).xip, (*snap).xcnt as usize)
        };
        let xip: Vec<String> = xip.iter().map(|x| x.into_inner().to_string()).collect();
        format!(
            "{}:{}:{}",
            (*snap).xmin.into_inner(),
            (*snap).xmax.into_inner(),
            xip.join(",")
        )
    }
}

/// A float as Hrana can carry it: JSON has no NaN or infinities, so those travel as text.
fn float_value(f: f64) -> Value {
    if f.is_nan() {
        Value::Text("NaN".into())
    } else if f.is_infinite() {
        Value::Text(if f > 0.0 { "Infinity" } else { "-Infinity" }.into())
    } else {
        Value::Float(f)
    }
}

unsafe fn read(r: &ColumnReader, datum: pg_sys::Datum) -> Result<Cell, String> {
    // SAFETY: `datum` is a non-null value of the column's type (caller).
    unsafe {
        if r.varlena {
            let ptr = datum.cast_mut_ptr::<pg_sys::varlena>();
            if pgrx::varlena::varatt_is_1b_e(ptr)
                && pgrx::varlena::vartag_external(ptr) as u32
                    == pg_sys::vartag_external::VARTAG_ONDISK
            {
                return Ok(Cell::UnchangedToast);
            }
        }
        let bits = datum.value();
        let v = match r.base_type {
            pg_sys::INT2OID => Value::Integer(bits as i16 as i64),
            pg_sys::INT4OID => Value::Integer(bits as i32 as i64),
            pg_sys::INT8OID => Value::Integer(bits as i64),
            pg_sys::OIDOID => Value::Integer(bits as u32 as i64),
            pg_sys::BOOLOID => Value::Integer(((bits & 0xff) != 0) as i64),
            pg_sys::FLOAT4OID => float_value(f32::from_bits(bits as u32) as f64),
            pg_sys::FLOAT8OID => float_value(f64::from_bits(bits as u64)),
            // Their output functions return the stored bytes: read them without the round trip.
            pg_sys::TEXTOID | pg_sys::VARCHAROID | pg_sys::BPCHAROID => {
                let detoasted = pg_sys::pg_detoast_datum_packed(datum.cast_mut_ptr());
                let bytes = pgrx::varlena::varlena_to_byte_slice(detoasted);
                Value::Text(
                    std::str::from_utf8(bytes)
                        .map_err(|e| format!("the value is not valid UTF-8 ({e})"))?
                        .to_owned(),
                )
            }
            pg_sys::BYTEAOID => {
                let detoasted = pg_sys::pg_detoast_datum_packed(datum.cast_mut_ptr());
                Value::Blob(pgrx::varlena::varlena_to_byte_slice(detoasted).to_vec())
            }
            pg_sys::DATEOID => text_or_output(convert::date(bits as i32), r, datum)?,
            pg_sys::TIMESTAMPOID => {
                text_or_output(convert::timestamp(bits as i64, false), r, datum)?
            }
            pg_sys::TIMESTAMPTZOID => {
                text_or_output(convert::timestamp(bits as i64, true), r, datum)?
            }
            pg_sys::TIMEOID => Value::Text(convert::time(bits as i64)),
            pg_sys::TIMETZOID => {
                let tz = datum.cast_mut_ptr::<pg_sys::TimeTzADT>();
                Value::Text(convert::timetz((*tz).time, (*tz).zone))
            }
            _ if r.array => {
                let json = pg_sys::OidFunctionCall1Coll(
                    pg_sys::Oid::from(pg_sys::F_ARRAY_TO_JSON_ANYARRAY),
                    pg_sys::InvalidOid,
                    datum,
                );
                let text = pg_sys::text_to_cstring(json.cast_mut_ptr());
                Value::Text(owned_text(text)?)
            }
            _ => Value::Text(output_text(r, datum)?),
        };
        Ok(Cell::Value(v))
    }
}

/// The type's own text output.
unsafe fn output_text(r: &ColumnReader, datum: pg_sys::Datum) -> Result<String, String> {
    // SAFETY: `datum` is a value of the column's type; the output function returns a palloc'd string.
    unsafe { owned_text(pg_sys::OidOutputFunctionCall(r.output_fn, datum)) }
}

/// A palloc'd C string as an owned `String` (freed here).
unsafe fn owned_text(text: *mut std::ffi::c_char) -> Result<String, String> {
    // SAFETY: `text` is a NUL-terminated palloc'd string.
    unsafe {
        let s = CStr::from_ptr(text)
            .to_str()
            .map_err(|e| format!("the value is not valid UTF-8 ({e})"))?
            .to_string();
        pg_sys::pfree(text.cast());
        Ok(s)
    }
}

/// An ISO value when `convert` produced one, else PostgreSQL's output (years outside 1..9999).
unsafe fn text_or_output(
    iso: Option<String>,
    r: &ColumnReader,
    datum: pg_sys::Datum,
) -> Result<Value, String> {
    Ok(Value::Text(match iso {
        Some(s) => s,
        // SAFETY: as in `read`.
        None => unsafe { output_text(r, datum) }?,
    }))
}

/// (schema, name) of relation `relid` as the catalog has it now (in a decoding callback: as of
/// the change being decoded); `None` when there is no such relation.
fn schema_and_name(relid: pg_sys::Oid) -> Option<(String, String)> {
    // SAFETY: catalog lookups by oid; the strings are palloc'd copies read before returning.
    unsafe {
        let name = pg_sys::get_rel_name(relid);
        if name.is_null() {
            return None;
        }
        let ns = pg_sys::get_namespace_name(pg_sys::get_rel_namespace(relid));
        if ns.is_null() {
            return None;
        }
        Some((
            CStr::from_ptr(ns).to_string_lossy().into_owned(),
            CStr::from_ptr(name).to_string_lossy().into_owned(),
        ))
    }
}

/// `schema.table` of relation `relid`, for messages (its OID when it has no name).
pub fn display_name(relid: pg_sys::Oid) -> String {
    match schema_and_name(relid) {
        Some((ns, name)) => format!("{ns}.{name}"),
        None => relid.to_u32().to_string(),
    }
}

/// Relation `relid` is the table `filter` names.
pub fn is_named(relid: pg_sys::Oid, filter: &crate::options::TableFilter) -> bool {
    schema_and_name(relid).is_some_and(|(ns, name)| filter.matches(&ns, &name))
}

/// A partition's changes replicated as those of a partitioned table (its root): the root's
/// description, and the partition's tuples converted to the root's row type by column name
/// (a partition may order or number its columns otherwise, as pgoutput handles).
pub struct AsRoot {
    rel: pg_sys::Relation,
    pub info: Rc<RelInfo>,
    map: *mut pg_sys::TupleConversionMap,
}

impl AsRoot {
    /// # Safety
    /// `leaf` is an open relation in a decoding callback; `root` one of its ancestors.
    pub unsafe fn open(leaf: pg_sys::Relation, root: pg_sys::Oid) -> Result<AsRoot, PgTursoError> {
        // SAFETY: as the caller guarantees; the reference is released on drop.
        unsafe {
            let rel = pg_sys::RelationIdGetRelation(root);
            if rel.is_null() {
                return Err(PgTursoError::SchemaChange {
                    table: name_str(&(*(*leaf).rd_rel).relname),
                    what: "its partitioned table does not exist".into(),
                });
            }
            let info = match rel_info(rel) {
                Ok(info) => info,
                Err(e) => {
                    pg_sys::RelationClose(rel);
                    return Err(e);
                }
            };
            let map = pg_sys::convert_tuples_by_name((*leaf).rd_att, (*rel).rd_att);
            Ok(AsRoot { rel, info, map })
        }
    }

    pub fn tupdesc(&self) -> pg_sys::TupleDesc {
        // SAFETY: the relation stays open while self lives.
        unsafe { (*self.rel).rd_att }
    }

    /// `tuple` (of the partition) in the root's row type.
    ///
    /// # Safety
    /// `tuple` is a valid tuple of the partition this was opened for.
    pub unsafe fn convert(&self, tuple: pg_sys::HeapTuple) -> pg_sys::HeapTuple {
        if self.map.is_null() {
            tuple
        } else {
            // SAFETY: as the caller guarantees; the copy lives in the current memory context.
            unsafe { pg_sys::execute_attr_map_tuple(tuple, self.map) }
        }
    }
}

impl Drop for AsRoot {
    fn drop(&mut self) {
        // SAFETY: both were obtained in `open` and are released once.
        unsafe {
            if !self.map.is_null() {
                pg_sys::free_conversion_map(self.map);
            }
            pg_sys::RelationClose(self.rel);
        }
    }
}

/// The Turso name of source table `source` (`<database oid>.<table oid>`) as PostgreSQL's catalog
/// has it now (in a decoding callback: as of the change being decoded). See
/// [`crate::apply::replicator::SourceName`].
pub fn turso_name_of(source: &str) -> Option<Option<String>> {
    let (db, rel) = source.split_once('.')?;
    let (db, rel) = (db.parse::<u32>().ok()?, rel.parse::<u32>().ok()?);
    // SAFETY: reads a process global set at backend start.
    if db != unsafe { pg_sys::MyDatabaseId }.to_u32() {
        return None;
    }
    Some(
        schema_and_name(pg_sys::Oid::from(rel)).map(|(ns, name)| Table::turso_name_for(&ns, &name)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_floats_travel_as_text() {
        assert_eq!(float_value(f64::NAN), Value::Text("NaN".into()));
        assert_eq!(float_value(f64::INFINITY), Value::Text("Infinity".into()));
        assert_eq!(
            float_value(f64::NEG_INFINITY),
            Value::Text("-Infinity".into())
        );
        assert_eq!(float_value(-0.5), Value::Float(-0.5));
    }
}
