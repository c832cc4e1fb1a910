//! Reading through SPI without writing.
//!
//! pgrx's `Spi::get_one*` run their query as a possible write, which gives the transaction an
//! xid (pgrx marks it "mutable"), and a transaction with an xid writes a commit record. For the
//! publication worker that was a record at every step, even idle: WAL that the next step found
//! and decoded, for ever. Queries that only read (a SELECT calling a function that writes is
//! still a read as far as SPI goes: the function's own statements run as writes) use [`one`].

use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;

/// The first column of the first row of `sql` run read-only with `args`; None when there is no
/// row, the value is NULL, or the query fails.
pub(crate) fn one<T: FromDatum + IntoDatum>(sql: &str, args: &[DatumWithOid]) -> Option<T> {
    Spi::connect(|client| client.select(sql, Some(1), args)?.first().get_one::<T>())
        .ok()
        .flatten()
}
