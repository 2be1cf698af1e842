//! The envelope of a stored message, kept in the ring in front of its bytes: MAIL FROM,
//! then each recipient of this shard as (inbox key, address as written). Lengths are
//! 4-byte little-endian; a spelling equal to its key is stored empty (most clients write
//! addresses in lowercase).

use super::LEN_PREFIX_BYTES;

/// The recipient records of an envelope: (inbox key, address as written) pairs.
#[derive(Clone, Copy)]
pub(super) struct RcptRecords<'a> {
    bytes: &'a [u8],
}

impl<'a> Iterator for RcptRecords<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<(&'a str, &'a str)> {
        if self.bytes.is_empty() {
            return None;
        }
        let key = take_str(&mut self.bytes);
        let written = take_str(&mut self.bytes);
        // An empty spelling means "as the key": most clients write addresses in lowercase.
        Some((key, if written.is_empty() { key } else { written }))
    }
}

/// Bytes of the envelope encoding: `len mail_from`, then per recipient `len key len written`
/// where `written` is empty when it equals `key`. Lengths are 4-byte little-endian. Saturates
/// (and then cannot fit any ring) on absurd lengths.
pub(super) fn envelope_len(mail_from: &str, rcpts: &[(&str, &str)]) -> usize {
    rcpts.iter().fold(
        LEN_PREFIX_BYTES.saturating_add(mail_from.len()),
        |sum, (key, written)| {
            let written_len = if key == written { 0 } else { written.len() };
            sum.saturating_add(2 * LEN_PREFIX_BYTES)
                .saturating_add(key.len())
                .saturating_add(written_len)
        },
    )
}

/// Writes the envelope into `out`, which is exactly `envelope_len` bytes long. Every string
/// fits a 4-byte length because the whole envelope does (checked by `insert`).
pub(super) fn write_envelope(out: &mut [u8], mail_from: &str, rcpts: &[(&str, &str)]) {
    let mut rest = put_str(out, mail_from);
    for (key, written) in rcpts {
        rest = put_str(rest, key);
        rest = put_str(rest, if key == written { "" } else { written });
    }
    assert!(rest.is_empty(), "envelope length mismatch");
}

fn put_str<'o>(out: &'o mut [u8], text: &str) -> &'o mut [u8] {
    let (prefix, rest) = out.split_at_mut(LEN_PREFIX_BYTES);
    prefix.copy_from_slice(&(text.len() as u32).to_le_bytes());
    let (body, rest) = rest.split_at_mut(text.len());
    body.copy_from_slice(text.as_bytes());
    rest
}

/// Splits an envelope into MAIL FROM and its recipient records.
pub(super) fn read_envelope(envelope: &[u8]) -> (&str, RcptRecords<'_>) {
    let mut bytes = envelope;
    let mail_from = take_str(&mut bytes);
    (mail_from, RcptRecords { bytes })
}

/// Reads one length-prefixed string. The envelope was written by `write_envelope` from
/// `&str`s, so a failure here means the ring is corrupt: crash rather than serve garbage.
fn take_str<'a>(bytes: &mut &'a [u8]) -> &'a str {
    let (prefix, rest) = bytes.split_at(LEN_PREFIX_BYTES);
    let len = u32::from_le_bytes(prefix.try_into().expect("4-byte prefix")) as usize;
    let (text, rest) = rest.split_at(len);
    *bytes = rest;
    std::str::from_utf8(text).expect("envelope strings are UTF-8")
}
