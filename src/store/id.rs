//! Message ids: opaque to clients, cheap to route and order for us.
//!
//! An id is `(boot_micros, shard_idx, seq)`: the process start time makes ids unique
//! across restarts, `shard_idx` says which shard stored it, and `seq` counts stores in
//! that shard. An inbox lives in one shard, so within an inbox `seq` orders messages
//! exactly by arrival, and `after=<id>` needs no lookup: it is "seq greater than".
//! On the wire an id is 27 lowercase hex digits, so ids of one server process also
//! sort newest-last as strings.

use std::fmt;
use std::str::FromStr;

/// Length of the text form: 13 hex digits of boot time, 2 of shard, 12 of sequence.
pub const MESSAGE_ID_LEN: usize = 27;

/// Identifies one stored message in one shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId {
    /// Process start, microseconds since the Unix epoch (52 bits suffice until year 2112).
    pub boot_micros: u64,
    /// The shard that stored the message.
    pub shard_idx: u16,
    /// Per-shard store counter, starting at 1.
    pub seq: u64,
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:013x}{:02x}{:012x}",
            self.boot_micros & 0xf_ffff_ffff_ffff,
            self.shard_idx & 0xff,
            self.seq & 0xffff_ffff_ffff
        )
    }
}

/// The text was not an id this server could have issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadMessageId;

impl FromStr for MessageId {
    type Err = BadMessageId;

    fn from_str(text: &str) -> Result<MessageId, BadMessageId> {
        let bytes = text.as_bytes();
        if bytes.len() != MESSAGE_ID_LEN
            || !bytes
                .iter()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
        {
            return Err(BadMessageId);
        }
        let hex = |range: std::ops::Range<usize>| {
            u64::from_str_radix(&text[range], 16).map_err(|_| BadMessageId)
        };
        Ok(MessageId {
            boot_micros: hex(0..13)?,
            shard_idx: hex(13..15)? as u16,
            seq: hex(15..27)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_sorts_as_text() {
        let a = MessageId {
            boot_micros: 1_764_000_000_000_000,
            shard_idx: 1,
            seq: 9,
        };
        let b = MessageId { seq: 10, ..a };
        assert_eq!(a.to_string().len(), MESSAGE_ID_LEN);
        assert_eq!(a.to_string().parse::<MessageId>(), Ok(a));
        assert!(a.to_string() < b.to_string());
    }

    #[test]
    fn rejects_what_we_never_issue() {
        for text in [
            "",
            "xyz",
            "0123456789abcdef0123456789A",
            "0123456789abcdef0123456789ab",
        ] {
            assert_eq!(text.parse::<MessageId>(), Err(BadMessageId), "{text:?}");
        }
    }
}
