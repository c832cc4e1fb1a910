//! Reads this server's own WAL: the commit record at an LSN, so that the replicator can tell
//! whether the transaction Turso's progress row names is one this server committed (see
//! `Replicator::with_history`).

use std::ffi::{c_char, c_int};

use pgrx::pg_sys;

// PostgreSQL's own page reader and segment callbacks, by their C symbols: the reader calls them
// from C (pgrx's wrappers of these names are Rust functions).
extern "C-unwind" {
    fn read_local_xlog_page_no_wait(
        state: *mut pg_sys::XLogReaderState,
        target_page: pg_sys::XLogRecPtr,
        req_len: c_int,
        target_rec: pg_sys::XLogRecPtr,
        cur_page: *mut c_char,
    ) -> c_int;
    fn wal_segment_open(
        state: *mut pg_sys::XLogReaderState,
        next_seg: pg_sys::XLogSegNo,
        tli: *mut pg_sys::TimeLineID,
    );
    fn wal_segment_close(state: *mut pg_sys::XLogReaderState);
}

/// How far this server's WAL has been flushed.
pub fn flushed() -> u64 {
    // SAFETY: reads a position in shared memory; the timeline is not wanted.
    unsafe { pg_sys::GetFlushRecPtr(std::ptr::null_mut()) }
}

/// The transaction whose commit record starts exactly at `lsn` in this server's WAL, as
/// (xid, commit time); `None` when there is no commit record there (another record, the middle
/// of one, or a position beyond the WAL that has been flushed).
pub fn commit_at(lsn: u64) -> Option<(u32, i64)> {
    // SAFETY: a private WAL reader over the local WAL, freed before returning (on an ERROR it
    // stays in the current memory context, which PostgreSQL frees). Only flushed WAL is read,
    // with the page reader that never waits. The routine is what PostgreSQL's
    // LocalXLogReaderRoutine() macro builds; XLogReaderAllocate copies it.
    unsafe {
        if lsn == 0 || lsn >= pg_sys::GetFlushRecPtr(std::ptr::null_mut()) {
            return None;
        }
        let mut routine = pg_sys::XLogReaderRoutine {
            page_read: Some(read_local_xlog_page_no_wait),
            segment_open: Some(wal_segment_open),
            segment_close: Some(wal_segment_close),
        };
        let reader = pg_sys::XLogReaderAllocate(
            pg_sys::wal_segment_size,
            std::ptr::null(),
            &mut routine,
            std::ptr::null_mut(),
        );
        if reader.is_null() {
            return None;
        }
        pg_sys::XLogBeginRead(reader, lsn);
        let mut errormsg: *mut c_char = std::ptr::null_mut();
        let header = pg_sys::XLogReadRecord(reader, &mut errormsg);
        let found = if header.is_null() || (*reader).ReadRecPtr != lsn {
            None
        } else {
            commit_of(reader, &*header)
        };
        pg_sys::XLogReaderFree(reader);
        found
    }
}

/// The (xid, commit time) of the record just read, if it is a commit record.
///
/// # Safety
/// `reader` has just read the record whose header is `header`.
unsafe fn commit_of(
    reader: *mut pg_sys::XLogReaderState,
    header: &pg_sys::XLogRecord,
) -> Option<(u32, i64)> {
    let info = u32::from(header.xl_info) & pg_sys::XLOG_XACT_OPMASK;
    let is_commit = info == pg_sys::XLOG_XACT_COMMIT || info == pg_sys::XLOG_XACT_COMMIT_PREPARED;
    if u32::from(header.xl_rmid) != pg_sys::RmgrIds::RM_XACT_ID || !is_commit {
        return None;
    }
    // SAFETY: a commit record's main data starts with xl_xact_commit, parsed the way
    // PostgreSQL's own decoding parses it (xact_decode).
    unsafe {
        let record = (*reader).record;
        if record.is_null()
            || ((*record).main_data_len as usize) < std::mem::size_of::<pg_sys::xl_xact_commit>()
        {
            return None;
        }
        let mut parsed: pg_sys::xl_xact_parsed_commit = std::mem::zeroed();
        pg_sys::ParseCommitRecord(
            header.xl_info,
            (*record).main_data as *mut pg_sys::xl_xact_commit,
            &mut parsed,
        );
        let xid = if parsed.twophase_xid != pg_sys::InvalidTransactionId {
            parsed.twophase_xid
        } else {
            header.xl_xid
        };
        Some((xid.into_inner(), parsed.xact_time))
    }
}
