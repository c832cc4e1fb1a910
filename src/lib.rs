//! pgturso: a logical decoding output plugin that replicates committed PostgreSQL transactions
//! into Turso (libSQL) over Hrana-over-HTTP, atomically and exactly once.

mod api;
pub mod client;
pub mod convert;
pub mod error;
pub mod hrana;
pub mod model;
pub mod options;
mod plugin;
pub mod replicator;
pub mod spool;
pub mod sql;
mod tuple;
mod wal;

::pgrx::pg_module_magic!();
