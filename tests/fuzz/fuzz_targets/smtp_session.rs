//! Fuzz target: the SMTP session as the socket loop drives it (see `mayfly::fuzzing::smtp_session`).
//! The harness and its assertions live in the library, so `cargo test --test fuzz_corpus`
//! replays this target's corpus without a fuzzer.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mayfly::fuzzing::smtp_session(data));
