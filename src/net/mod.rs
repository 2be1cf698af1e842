//! Socket loops: the only code that reads or writes a connection.
//!
//! `smtp_conn` drives an `smtp::Session`, `http_conn` drives `http::api`; both run on the
//! executor that accepted the connection and reach other shards through `runtime::ShardCtx`.
//! `tls` holds the certificate (reloaded on SIGHUP) and the handshake; both loops are
//! generic over `tls::Conn`, so they serve plain TCP and TLS alike. `ws_conn` takes over an
//! HTTP connection that upgraded to a WebSocket.

pub mod http_conn;
pub mod rate_limit;
pub mod smtp_conn;
pub mod tls;
pub mod ws_conn;
