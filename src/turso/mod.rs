//! Plain Rust, no PostgreSQL: the Turso side. Statements (`sql`), their Hrana wire format
//! (`hrana`) and the HTTP client that carries them (`client`).

pub mod client;
pub mod hrana;
pub mod sql;
