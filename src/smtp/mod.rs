//! The SMTP protocol core: bytes in, replies and finished messages out, no IO.
//!
//! `parser` turns one command line into a `Command` borrowing the input, `data` scans
//! DATA bodies, `session` is the state machine the socket loop drives with
//! `Session::advance`, and `reply` holds every reply line. None of these touch a socket
//! or an executor, so they are tested with plain byte strings (and proptest) and never
//! panic on any input.

pub mod data;
pub mod parser;
pub mod reply;
pub mod session;

pub use session::{Delivery, Event, Session, SessionConfig, Transaction};
