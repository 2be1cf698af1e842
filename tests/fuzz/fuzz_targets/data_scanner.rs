//! Fuzz target: the DATA scanner against a naive model, and the dot-stuffing round trip.
//! The harness and its assertions live in the library, so `cargo test --test fuzz_corpus`
//! replays this target's corpus without a fuzzer.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mayfly::fuzzing::data_scanner(data));
