//! Fuzz harnesses: one function per fuzz target, each taking the fuzzer's bytes.
//!
//! They live in the library (not in `tests/fuzz/`) so that the same code runs under the
//! fuzzer (`tests/fuzz/fuzz_targets/*.rs`, libFuzzer through cargo-fuzz) and under plain
//! `cargo test` (`tests/fuzz_corpus.rs` replays the committed corpus), with no fuzzer
//! installed. Each harness drives the real code the way the socket loops in `net` drive it
//! and checks the contracts those loops rely on with assertions; "does not panic" is only
//! the least of them. An assertion that fails is a finding: `docs/fuzzing.md` says how to
//! keep its input as a regression.
//!
//! One file per target: `smtp.rs` (the SMTP session), `data.rs` (the DATA scanner),
//! `http.rs` (the HTTP request parser and router), `websocket.rs` (an upgraded socket and
//! its handshake), `pop3.rs` and `imap.rs` (the mail client sessions, served from the small
//! in-memory inbox of `inbox.rs`). This file holds what they share: the input decoding.
//!
//! Input layout: most harnesses read a *chunking prefix* first (`split_pieces`): one byte
//! says how many cut bytes follow, and each cut byte is the length of one read. The rest is
//! the byte stream a client sends, cut into reads of those lengths in turn. So the fuzzer
//! controls both what is sent and how it is split, and every harness compares the split
//! run against a run that gets the whole stream at once (or against a naive model).
//!
//! Not part of the API: hidden from the docs, and its asserts are meant to fire.

mod data;
mod http;
mod imap;
mod inbox;
mod pop3;
mod smtp;
mod websocket;

pub use data::data_scanner;
pub use http::{HTTP_LIMITS, http_request};
pub use imap::imap_session;
pub use pop3::pop3_session;
pub use smtp::smtp_session;
pub use websocket::websocket;

#[cfg(test)]
mod tests;

/// Most cut bytes a chunking prefix may hold; the pieces cycle through them.
const CUTS_MAX: usize = 16;
/// A cut byte at or above this is a long read: `(cut - CUT_LONG_FROM + 1) * CUT_LONG_UNIT_BYTES`.
const CUT_LONG_FROM: u8 = 0xF0;
/// Unit of a long read, so a short fuzz input can still cut big bodies into big reads.
const CUT_LONG_UNIT_BYTES: usize = 4096;
/// Domains the harnesses accept mail for (a wildcard too, so both kinds of rule are hit).
pub(super) const DOMAINS: [&str; 2] = ["example.test", "*.sub.example.test"];

/// Splits a chunking prefix off `data`: its first byte says how many cut bytes follow
/// (modulo `CUTS_MAX + 1`). Returns the cuts and the stream.
pub(super) fn split_pieces(data: &[u8]) -> (&[u8], &[u8]) {
    let Some((&n_cuts, rest)) = data.split_first() else {
        return (&[], &[]);
    };
    let n_cuts = (usize::from(n_cuts) % (CUTS_MAX + 1)).min(rest.len());
    rest.split_at(n_cuts)
}

/// The length of the read a cut byte stands for.
fn piece_bytes(cut: u8) -> usize {
    if cut < CUT_LONG_FROM {
        usize::from(cut) + 1
    } else {
        usize::from(cut - CUT_LONG_FROM + 1) * CUT_LONG_UNIT_BYTES
    }
}

/// The stream cut into reads whose lengths cycle through the cuts; no cuts, one read.
pub(super) struct Pieces<'a> {
    rest: &'a [u8],
    cuts: &'a [u8],
    cut_idx: usize,
}

impl<'a> Pieces<'a> {
    pub(super) fn new(stream: &'a [u8], cuts: &'a [u8]) -> Pieces<'a> {
        Pieces {
            rest: stream,
            cuts,
            cut_idx: 0,
        }
    }
}

impl<'a> Iterator for Pieces<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.rest.is_empty() {
            return None;
        }
        let piece_len = match self.cuts {
            [] => self.rest.len(),
            cuts => piece_bytes(cuts[self.cut_idx % cuts.len()]).min(self.rest.len()),
        };
        self.cut_idx += 1;
        let (piece, rest) = self.rest.split_at(piece_len);
        self.rest = rest;
        Some(piece)
    }
}

/// At most the last 80 bytes, for a panic message.
pub(super) fn tail(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[bytes.len().saturating_sub(80)..]).into_owned()
}

/// Longest stream an alphabet makes: tokens expand, and a few long tokens per input byte
/// would otherwise make megabytes of one 4 KiB input.
const ALPHABET_BYTES_MAX: usize = 64 * 1024;

/// Maps fuzz bytes onto a protocol's alphabet, so the fuzzer gets past the command words
/// without guessing them (as `smtp.rs` does for SMTP): a byte below 0x20 stands for
/// `tokens[byte]` and a byte from 0x80 for `tokens[0x20 + byte - 0x80]`, so printable
/// ASCII keeps its meaning; bytes past the table stand for themselves. The result stops
/// growing at `ALPHABET_BYTES_MAX`.
pub(super) fn token_alphabet(stream: &[u8], tokens: &[&[u8]]) -> Vec<u8> {
    let mut mapped = Vec::with_capacity(stream.len() * 4);
    for &byte in stream {
        if mapped.len() >= ALPHABET_BYTES_MAX {
            break;
        }
        let token_idx = match byte {
            0..0x20 => Some(usize::from(byte)),
            0x80.. => Some(0x20 + usize::from(byte - 0x80)),
            _ => None,
        };
        match token_idx.and_then(|token_idx| tokens.get(token_idx)) {
            Some(token) => mapped.extend_from_slice(token),
            None => mapped.push(byte),
        }
    }
    mapped
}

/// Which way each of the harness's store decisions goes (a login accepted, a message still
/// there, a deletion that worked): bit `n % 16` of the fuzzer's `bits` for the n-th
/// decision, so both runs of one input (split and whole) decide alike.
pub(super) struct Fates {
    bits: u16,
    n_decided: usize,
}

impl Fates {
    pub(super) fn new(bits: u16) -> Fates {
        Fates { bits, n_decided: 0 }
    }

    /// The next decision: true is the usual outcome (accepted, present, done).
    pub(super) fn next(&mut self) -> bool {
        let bit = (self.bits >> (self.n_decided % 16)) & 1;
        self.n_decided += 1;
        bit == 1
    }

    /// Decisions so far, to vary what a refusal or a change is.
    pub(super) fn n_decided(&self) -> usize {
        self.n_decided
    }
}
