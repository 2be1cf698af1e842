//! Socket loops: the only code that reads or writes a connection.
//!
//! `smtp_conn` drives an `smtp::Session`, `http_conn` drives `http::api`; both run on the
//! executor that accepted the connection and reach other shards through `runtime::ShardCtx`.

pub mod http_conn;
pub mod smtp_conn;
