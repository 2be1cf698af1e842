//! Wall-clock time as Unix milliseconds, the unit the store and the API use.
//!
//! The store takes time as an argument (it never reads a clock), so tests drive it with
//! any time they like; the runtime and the socket loops read the clock here.

use std::time::{SystemTime, UNIX_EPOCH};

/// Unix time in milliseconds (a vDSO clock read, no syscall).
pub fn now_ms() -> u64 {
    unix_ms(SystemTime::now())
}

/// `time` as Unix milliseconds; 0 before 1970.
pub fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |since| {
        u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
    })
}

/// `time` as Unix microseconds; 0 before 1970.
pub fn unix_micros(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |since| {
        u64::try_from(since.as_micros()).unwrap_or(u64::MAX)
    })
}
