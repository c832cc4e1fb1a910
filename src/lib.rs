//! pgturso: a logical decoding output plugin that replicates committed PostgreSQL transactions
//! into Turso (libSQL) over Hrana-over-HTTP, atomically and exactly once.
//!
//! Data flows one way, and modules import only downwards: `decoding` (PostgreSQL's callbacks,
//! the only unsafe code) → `apply` (exactly-once transactions) → `turso` (statements, Hrana,
//! HTTP), all speaking the vocabulary of `model`. `api` and `worker` are the SQL-callable side:
//! the helpers behind `sql/pgturso.sql`, and the background worker of a publication.

mod api;
pub mod apply;
pub mod decoding;
pub mod error;
pub mod model;
pub mod options;
mod spi;
pub mod turso;
mod worker;

::pgrx::pg_module_magic!();
