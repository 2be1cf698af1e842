//! Fuzz target: the HTTP request parser at every split, and the router.
//! The harness and its assertions live in the library, so `cargo test --test fuzz_corpus`
//! replays this target's corpus without a fuzzer.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mayfly::fuzzing::http_request(data));
