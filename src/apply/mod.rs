//! Plain Rust, no PostgreSQL: decoded transactions become Turso transactions, exactly once (the
//! [`replicator::Replicator`], streaming and its spool, progress and schema bookkeeping).

pub mod replicator;
pub mod spool;
