//! The PostgreSQL side, and the only home of raw pointers and unsafe code: the output plugin's
//! callbacks, tuples turned into owned rows, datums into values, and the WAL reader.

pub mod convert;
pub(crate) mod plugin;
pub(crate) mod tuple;
pub(crate) mod wal;
