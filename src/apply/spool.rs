//! A streamed transaction's changes on local disk, so that they can be applied again after
//! Turso's copy of them was rolled back.
//!
//! PostgreSQL streams a large transaction to the output plugin in pieces while it is still in
//! progress and frees each piece once the plugin has seen it. pgturso applies the pieces to an
//! open Turso transaction as they come, and also appends them here: when that Turso transaction
//! has to be given up (another transaction commits first, a subtransaction is rolled back, the
//! stream idles), the transaction is applied from this file at its commit instead.
//!
//! Entries are postcard-encoded and length-prefixed. The file is unlinked as soon as it is
//! created, so it disappears with its handle, also when the backend dies. Plain Rust, no
//! PostgreSQL.

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::marker::PhantomData;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::de::DeserializeOwned;
use serde::Serialize;

/// File names start like PostgreSQL's own temporary files, so a restart removes any that a crash
/// left between creating and unlinking them.
const PREFIX: &str = "pgsql_tmp_pgturso";

static NEXT: AtomicU64 = AtomicU64::new(0);

/// An append-only file of entries that can be cut back to an earlier length and read once.
pub struct Spool {
    file: BufWriter<File>,
    len: u64,
    entries: u64,
    buf: Vec<u8>,
}

impl Spool {
    /// A new, empty spool in `dir` (created if missing).
    pub fn create(dir: &Path) -> io::Result<Spool> {
        std::fs::create_dir_all(dir)?;
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("{PREFIX}.{}.{n}", std::process::id()));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        std::fs::remove_file(&path)?;
        Ok(Spool {
            file: BufWriter::with_capacity(64 * 1024, file),
            len: 0,
            entries: 0,
            buf: Vec::new(),
        })
    }

    /// Bytes written so far: a position [`Spool::truncate`] can return to.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn entries(&self) -> u64 {
        self.entries
    }

    pub fn append<E: Serialize>(&mut self, entry: &E) -> io::Result<()> {
        self.buf.clear();
        self.buf.extend_from_slice(&[0; 4]);
        let buf = std::mem::take(&mut self.buf);
        let mut buf = postcard::to_extend(entry, buf).map_err(io::Error::other)?;
        let n = u32::try_from(buf.len() - 4)
            .map_err(|_| io::Error::other("a spooled change is larger than 4 GB"))?;
        buf[..4].copy_from_slice(&n.to_le_bytes());
        self.file.write_all(&buf)?;
        self.len += buf.len() as u64;
        self.entries += 1;
        self.buf = buf;
        Ok(())
    }

    /// Drops every entry written after the spool was `len` bytes long.
    pub fn truncate(&mut self, len: u64, entries: u64) -> io::Result<()> {
        assert!(len <= self.len, "a spool is only ever cut back");
        self.file.flush()?;
        let file = self.file.get_mut();
        file.set_len(len)?;
        file.seek(SeekFrom::Start(len))?;
        self.len = len;
        self.entries = entries;
        Ok(())
    }

    /// Reads the entries back, in the order they were written.
    pub fn read<E: DeserializeOwned>(self) -> io::Result<Entries<E>> {
        let mut file = self.file.into_inner().map_err(|e| e.into_error())?;
        file.seek(SeekFrom::Start(0))?;
        Ok(Entries {
            reader: BufReader::with_capacity(64 * 1024, file),
            left: self.entries,
            buf: self.buf,
            _entry: PhantomData,
        })
    }
}

/// The entries of a spool, read one at a time.
pub struct Entries<E> {
    reader: BufReader<File>,
    left: u64,
    buf: Vec<u8>,
    _entry: PhantomData<E>,
}

impl<E: DeserializeOwned> Iterator for Entries<E> {
    type Item = io::Result<E>;

    fn next(&mut self) -> Option<io::Result<E>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let mut read = || -> io::Result<E> {
            let mut n = [0u8; 4];
            self.reader.read_exact(&mut n)?;
            self.buf.resize(u32::from_le_bytes(n) as usize, 0);
            self.reader.read_exact(&mut self.buf)?;
            postcard::from_bytes(&self.buf).map_err(io::Error::other)
        };
        Some(read())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Cell, RowChange, Value};

    fn row(i: i64) -> RowChange {
        RowChange::Update {
            old: Some(vec![Cell::Value(Value::Integer(i))]),
            new: vec![
                Cell::Value(Value::Integer(i)),
                Cell::Value(Value::Text(format!("row {i} é"))),
                Cell::Value(Value::Float(f64::from_bits(
                    0x7ff8_0000_0000_0001 + i as u64,
                ))),
                Cell::Value(Value::Float(-0.0)),
                Cell::Value(Value::Blob(vec![0, 255, i as u8])),
                Cell::Value(Value::Null),
                Cell::UnchangedToast,
            ],
        }
    }

    fn read_all(spool: Spool) -> Vec<RowChange> {
        spool
            .read::<RowChange>()
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    #[test]
    fn entries_come_back_exactly_and_in_order() {
        let mut spool = Spool::create(&std::env::temp_dir()).unwrap();
        let rows: Vec<RowChange> = (0..5000).map(row).collect();
        for r in &rows {
            spool.append(r).unwrap();
        }
        assert_eq!(spool.entries(), 5000);
        let back = read_all(spool);
        assert_eq!(back.len(), rows.len());
        for (a, b) in back.iter().zip(&rows) {
            // Compare float bits too: NaN payloads and -0.0 must survive.
            assert_eq!(format!("{a:?}"), format!("{b:?}"));
            if let (RowChange::Update { new: na, .. }, RowChange::Update { new: nb, .. }) = (a, b) {
                for (x, y) in na.iter().zip(nb) {
                    if let (Cell::Value(Value::Float(x)), Cell::Value(Value::Float(y))) = (x, y) {
                        assert_eq!(x.to_bits(), y.to_bits());
                    }
                }
            }
        }
    }

    #[test]
    fn truncate_drops_what_came_after_and_appending_goes_on() {
        let mut spool = Spool::create(&std::env::temp_dir()).unwrap();
        for i in 0..10 {
            spool.append(&row(i)).unwrap();
        }
        let (len, n) = (spool.len(), spool.entries());
        for i in 10..3000 {
            spool.append(&row(i)).unwrap();
        }
        spool.truncate(len, n).unwrap();
        spool.append(&row(99_999)).unwrap();
        let back = read_all(spool);
        let expected: Vec<RowChange> = (0..10).chain([99_999]).map(row).collect();
        assert_eq!(format!("{back:?}"), format!("{expected:?}"));
    }

    #[test]
    fn the_file_is_gone_from_the_directory_at_once() {
        let dir = std::env::temp_dir().join(format!("pgturso-spool-test-{}", std::process::id()));
        let mut spool = Spool::create(&dir).unwrap();
        spool.append(&row(1)).unwrap();
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        assert_eq!(read_all(spool).len(), 1);
        std::fs::remove_dir(&dir).unwrap();
    }
}
