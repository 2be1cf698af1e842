//! Fuzz target: the IMAP session as the socket loop drives it, over an in-memory inbox
//! that changes (see `mayfly::fuzzing::imap_session`).
//! The harness and its assertions live in the library, so `cargo test --test fuzz_corpus`
//! replays this target's corpus without a fuzzer.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mayfly::fuzzing::imap_session(data));
