//! The value forms settings are written in: durations, sizes, counts, booleans, listener
//! addresses, paths and log filters, and the checks that are not plain ranges.
//!
//! Every parser takes the text exactly as given (flag, environment variable or file) and
//! returns a one-line reason without the value on error; `layers` adds where the value
//! came from. `format_duration` and `format_size` write values back in the form
//! their parsers read, so error messages and docs quote bounds the way a user types them.

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

/// Binary units accepted by [`parse_size`], largest first (the order [`format_size`] tries them).
const SIZE_UNITS: [(&str, u64); 4] = [
    ("TiB", 1 << 40),
    ("GiB", 1 << 30),
    ("MiB", 1 << 20),
    ("KiB", 1 << 10),
];
/// Units accepted by [`parse_duration`] in milliseconds, largest first: a compound duration
/// must use them in this order, each at most once ("1h30m", not "30m1h").
pub(super) const DURATION_UNITS: [(&str, u64); 5] = [
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];
pub(super) const DURATION_EXPECTED: &str =
    "expected a duration such as 500ms, 30s, 10m, 1h or 1h30m";
pub(super) const SIZE_EXPECTED: &str =
    "expected a size such as 512KiB, 10MiB, 1GiB or 1048576 (bytes)";
const BOOL_EXPECTED: &str = "expected true or false (also 1/0, yes/no, on/off)";
/// The spellings [`parse_bool`] accepts (any ASCII case), as container tooling writes them.
const BOOL_WORDS: [(&str, bool); 8] = [
    ("true", true),
    ("false", false),
    ("1", true),
    ("0", false),
    ("yes", true),
    ("no", false),
    ("on", true),
    ("off", false),
];
pub(super) const MIB: usize = 1 << 20;
/// RFC 5321 4.5.3.1.7: a server must accept messages of at least 64K octets.
pub(super) const MESSAGE_BYTES_MIN: usize = 64 << 10;
/// Each core's shard gets `memory_bytes_max / cores`; below this a shard is not useful.
pub(super) const MEMORY_BYTES_PER_CORE_MIN: usize = MIB;

/// Parses a duration: one or more `<whole number><unit>` parts with units `d`, `h`, `m`,
/// `s`, `ms`, largest first and each at most once: "500ms", "30s", "10m", "1h", "2d",
/// "1h30m". No sign, no fraction, no spaces; "0s" is zero (callers check their own range).
///
/// # Errors
///
/// A one-line reason (without the value) for empty text, a missing or unknown unit, a
/// stray character, units out of order, or a total beyond `u64` milliseconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    if text.is_empty() {
        return Err(format!("empty: {DURATION_EXPECTED}"));
    }
    let mut rest = text;
    let mut total_ms: u64 = 0;
    // Index into DURATION_UNITS of the previous part's unit: the next must come later.
    let mut next_unit_idx = 0;
    while !rest.is_empty() {
        let Some((number, after_number)) = split_number(rest) else {
            return Err(unexpected(text, rest, DURATION_EXPECTED));
        };
        let unit_len = after_number
            .bytes()
            .take_while(u8::is_ascii_alphabetic)
            .count();
        let (unit, after_unit) = after_number.split_at(unit_len);
        if unit.is_empty() {
            return Err(if after_unit.is_empty() {
                format!("missing unit after {number}: {DURATION_EXPECTED}")
            } else {
                unexpected(text, after_unit, DURATION_EXPECTED)
            });
        }
        let Some(unit_idx) = DURATION_UNITS.iter().position(|(name, _)| *name == unit) else {
            return Err(format!("unknown unit '{unit}': {DURATION_EXPECTED}"));
        };
        if unit_idx < next_unit_idx {
            return Err(format!(
                "units must go from largest to smallest, each once (d, h, m, s, ms): \
                 {DURATION_EXPECTED}"
            ));
        }
        next_unit_idx = unit_idx + 1;
        let part_ms = number
            .parse::<u64>()
            .ok()
            .and_then(|number| number.checked_mul(DURATION_UNITS[unit_idx].1));
        total_ms = part_ms
            .and_then(|part_ms| total_ms.checked_add(part_ms))
            .ok_or_else(|| "duration too large".to_string())?;
        rest = after_unit;
    }
    Ok(Duration::from_millis(total_ms))
}

/// Parses a size in bytes: a whole number with no unit or `B` (bytes), or one of `KiB`,
/// `MiB`, `GiB`, `TiB` (powers of 1024): "1048576", "512KiB", "10MiB", "1GiB". Units are
/// case-sensitive; decimal units ("MB", "k") are refused as ambiguous rather than guessed.
/// No sign, fraction or spaces. Zero parses; callers reject it where it is meaningless.
///
/// # Errors
///
/// A one-line reason (without the value) for empty or malformed text, an unknown or
/// ambiguous unit, or a size that does not fit in `usize`.
pub fn parse_size(text: &str) -> Result<usize, String> {
    if text.is_empty() {
        return Err(format!("empty: {SIZE_EXPECTED}"));
    }
    let Some((number, unit)) = split_number(text) else {
        return Err(unexpected(text, text, SIZE_EXPECTED));
    };
    let unit_bytes = match unit {
        "" | "B" => 1,
        _ => match SIZE_UNITS.iter().find(|(name, _)| *name == unit) {
            Some((_, unit_bytes)) => *unit_bytes,
            None if is_decimal_size_unit(unit) => {
                return Err(format!(
                    "ambiguous unit '{unit}': use KiB, MiB, GiB or TiB (powers of 1024), or bytes"
                ));
            }
            None if unit.starts_with(|c: char| c.is_ascii_alphabetic()) => {
                return Err(format!("unknown unit '{unit}': {SIZE_EXPECTED}"));
            }
            None => return Err(unexpected(text, unit, SIZE_EXPECTED)),
        },
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|number| number.checked_mul(unit_bytes))
        .and_then(|bytes| usize::try_from(bytes).ok())
        .ok_or_else(|| "size too large".to_string())
}

/// Formats a duration the way [`parse_duration`] reads it ("1h30m", "500ms", "0s"), so
/// that `parse_duration(&format_duration(d)) == Ok(d)` for whole milliseconds. A duration
/// with a sub-millisecond part is shown in `Debug` form, which does not parse back.
pub fn format_duration(duration: Duration) -> String {
    if !duration.subsec_nanos().is_multiple_of(1_000_000) {
        return format!("{duration:?}");
    }
    let mut rest_ms = duration.as_millis();
    if rest_ms == 0 {
        return "0s".to_string();
    }
    let mut text = String::new();
    for (name, unit_ms) in DURATION_UNITS {
        let unit_ms = u128::from(unit_ms);
        if rest_ms >= unit_ms {
            text.push_str(&format!("{}{name}", rest_ms / unit_ms));
            rest_ms %= unit_ms;
        }
    }
    text
}

/// Formats a byte count the way [`parse_size`] reads it: in the largest binary unit that
/// divides it ("10MiB", "512KiB"), else in bytes ("1000B").
pub fn format_size(bytes: usize) -> String {
    let bytes_u64 = bytes as u64;
    for (name, unit_bytes) in SIZE_UNITS {
        if bytes_u64 != 0 && bytes_u64.is_multiple_of(unit_bytes) {
            return format!("{}{name}", bytes_u64 / unit_bytes);
        }
    }
    format!("{bytes}B")
}

/// A boolean: `true`/`false`, `1`/`0`, `yes`/`no` or `on`/`off`, in any ASCII case, which
/// covers what container tooling and shell scripts write.
pub(super) fn parse_bool(text: &str) -> Result<bool, String> {
    BOOL_WORDS
        .iter()
        .find(|(word, _)| word.eq_ignore_ascii_case(text))
        .map(|(_, value)| *value)
        .ok_or_else(|| BOOL_EXPECTED.to_string())
}

/// Splits leading ASCII digits off `text`; `None` when it does not start with one.
fn split_number(text: &str) -> Option<(&str, &str)> {
    let digits_len = text.bytes().take_while(u8::is_ascii_digit).count();
    (digits_len > 0).then(|| text.split_at(digits_len))
}

/// The reason for `text` having a character where a number or unit should be, at the
/// start of `rest`. Text that is wrong from its first character gets just `expected`.
fn unexpected(text: &str, rest: &str, expected: &str) -> String {
    match rest.chars().next() {
        Some(c) if rest.len() < text.len() => {
            format!("unexpected character '{}': {expected}", c.escape_debug())
        }
        _ => expected.to_string(),
    }
}

fn is_decimal_size_unit(unit: &str) -> bool {
    matches!(
        unit,
        "k" | "K" | "kB" | "KB" | "M" | "MB" | "G" | "GB" | "T" | "TB" | "Ki" | "Mi" | "Gi" | "Ti"
    )
}

/// A whole number (ASCII digits only) within `range`.
pub(super) fn parse_count(text: &str, range: &RangeInclusive<usize>) -> Result<usize, String> {
    let expected = || {
        format!(
            "expected a whole number from {} to {}",
            range.start(),
            range.end()
        )
    };
    if split_number(text).is_none_or(|(_, rest)| !rest.is_empty()) {
        return Err(expected());
    }
    match text.parse::<usize>() {
        Ok(count) if range.contains(&count) => Ok(count),
        _ => Err(expected()),
    }
}

/// A duration (see [`parse_duration`]) within `range`.
pub(super) fn parse_duration_within(
    text: &str,
    range: &RangeInclusive<Duration>,
) -> Result<Duration, String> {
    let duration = parse_duration(text)?;
    if range.contains(&duration) {
        return Ok(duration);
    }
    Err(format!(
        "must be from {} to {}",
        format_duration(*range.start()),
        format_duration(*range.end())
    ))
}

/// A memory budget: at least one core's minimum, and no more than the machine has.
pub(super) fn check_memory(
    bytes: usize,
    physical_memory_bytes: Option<usize>,
) -> Result<usize, String> {
    if bytes < MEMORY_BYTES_PER_CORE_MIN {
        return Err(format!(
            "must be at least {}",
            format_size(MEMORY_BYTES_PER_CORE_MIN)
        ));
    }
    if let Some(physical_memory_bytes) = physical_memory_bytes
        && bytes > physical_memory_bytes
    {
        // Shards allocate up front; with overcommit this would only fail later, under load.
        return Err(format!(
            "more than this machine's memory ({} MiB)",
            physical_memory_bytes / MIB
        ));
    }
    Ok(bytes)
}

/// A largest message size: at least what RFC 5321 asks a server to accept. The upper bound
/// depends on other settings (see `checks`).
pub(super) fn check_message_size(bytes: usize) -> Result<usize, String> {
    if bytes < MESSAGE_BYTES_MIN {
        return Err(format!(
            "must be at least {} (RFC 5321 4.5.3.1.7)",
            format_size(MESSAGE_BYTES_MIN)
        ));
    }
    Ok(bytes)
}

/// An IP address and port; names are not resolved, so that start-up does not depend on DNS.
pub(super) fn parse_socket_addr(text: &str) -> Result<SocketAddr, String> {
    text.parse::<SocketAddr>().map_err(|_| {
        let looks_like_name = text
            .rsplit_once(':')
            .is_some_and(|(host, _)| host.starts_with(|c: char| c.is_ascii_alphabetic()));
        if looks_like_name {
            "expected an IP address and port such as 127.0.0.1:2525 or [::1]:2525 \
             (host names are not resolved)"
                .to_string()
        } else {
            "expected ADDR:PORT such as 127.0.0.1:2525, 0.0.0.0:25 or [::1]:2525".to_string()
        }
    })
}

/// A file path; relative paths are taken from the working directory. Whether the file
/// exists and holds what it should is checked when it is read (TLS set-up), not here.
pub(super) fn parse_path(text: &str) -> Result<PathBuf, String> {
    if text.is_empty() {
        return Err("empty: expected a file path".to_string());
    }
    Ok(PathBuf::from(text))
}

/// The same check `tracing_subscriber` will do when logging is set up, done here so a bad
/// filter is reported with the other configuration errors.
pub(super) fn validate_log_filter(text: &str) -> Result<(), String> {
    if text.trim().is_empty() {
        return Err("empty: expected a filter such as info or mayfly=debug,warn".to_string());
    }
    tracing_subscriber::EnvFilter::builder()
        .parse(text)
        .map(|_| ())
        .map_err(|err| format!("{err}: expected a filter such as info or mayfly=debug,warn"))
}

/// An rspamd score (`--spam-reject-score`): a finite number within rspamd's range of use.
pub(super) fn parse_score(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(score) if score.is_finite() && score.abs() <= 1_000.0 => Ok(score),
        _ => Err(format!("{text:?}: expected a number from -1000 to 1000")),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use proptest::prelude::*;

    use super::*;
    use crate::config::domains::validate_domain;

    const MS: u64 = 1;
    const S: u64 = 1_000;
    const M: u64 = 60_000;
    const H: u64 = 3_600_000;
    const D: u64 = 86_400_000;
    const KIB: usize = 1 << 10;

    #[test]
    fn parse_duration_accepts() {
        let cases: &[(&str, u64)] = &[
            ("500ms", 500 * MS),
            ("30s", 30 * S),
            ("10m", 10 * M),
            ("1h", H),
            ("2d", 2 * D),
            ("1h30m", H + 30 * M),
            ("1m30s", M + 30 * S),
            ("1d2h3m4s5ms", D + 2 * H + 3 * M + 4 * S + 5 * MS),
            ("1s500ms", S + 500 * MS),
            ("0s", 0),
            ("0ms", 0),
            ("007s", 7 * S),
            ("18446744073709551615ms", u64::MAX),
        ];
        for (text, expected_ms) in cases {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_millis(*expected_ms)),
                "{text}"
            );
        }
    }

    #[test]
    fn parse_duration_rejects() {
        let cases: &[(&str, &str)] = &[
            ("", "empty"),
            ("abc", DURATION_EXPECTED),
            ("s", DURATION_EXPECTED),
            ("30", "missing unit after 30"),
            ("-5s", DURATION_EXPECTED),
            ("+5s", DURATION_EXPECTED),
            ("1.5h", "unexpected character '.'"),
            ("5 s", "unexpected character ' '"),
            (" 5s", DURATION_EXPECTED),
            ("5s ", "unexpected character ' '"),
            ("5s5", "missing unit after 5"),
            ("1h-5m", "unexpected character '-'"),
            ("5S", "unknown unit 'S'"),
            ("1y", "unknown unit 'y'"),
            ("1mm", "unknown unit 'mm'"),
            ("1sec", "unknown unit 'sec'"),
            ("30m1h", "units must go from largest to smallest"),
            ("1h1h", "units must go from largest to smallest"),
            ("5ms1s", "units must go from largest to smallest"),
            ("18446744073709551616ms", "too large"),
            ("213503982335d", "too large"),
            ("213503982334d86400000s", "too large"),
            ("99999999999999999999999s", "too large"),
            ("5s\n", "unexpected character '\\n'"),
            ("５s", DURATION_EXPECTED),
            ("1５s", "unexpected character '５'"),
        ];
        for (text, expected) in cases {
            let reason = parse_duration(text).expect_err(text);
            assert!(reason.contains(expected), "{text:?}: {reason}");
            assert!(!reason.contains('\n'), "{text:?}: {reason}");
        }
    }

    #[test]
    fn parse_size_accepts() {
        let cases: &[(&str, usize)] = &[
            ("0", 0),
            ("1", 1),
            ("1048576", 1 << 20),
            ("1B", 1),
            ("512KiB", 512 * KIB),
            ("10MiB", 10 * MIB),
            ("256MiB", 256 * MIB),
            ("1GiB", 1 << 30),
            ("2TiB", 2 << 40),
            ("0010MiB", 10 * MIB),
            ("18446744073709551615", usize::MAX),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_size(text), Ok(*expected), "{text}");
        }
    }

    #[test]
    fn parse_size_rejects() {
        let cases: &[(&str, &str)] = &[
            ("", "empty"),
            ("abc", SIZE_EXPECTED),
            ("MiB", SIZE_EXPECTED),
            ("-1", SIZE_EXPECTED),
            ("+1", SIZE_EXPECTED),
            ("1.5GiB", "unexpected character '.'"),
            ("10 MiB", "unexpected character ' '"),
            ("10MB", "ambiguous unit 'MB'"),
            ("10k", "ambiguous unit 'k'"),
            ("10Mi", "ambiguous unit 'Mi'"),
            ("10mib", "unknown unit 'mib'"),
            ("10MiBs", "unknown unit 'MiBs'"),
            ("10b", "unknown unit 'b'"),
            ("18446744073709551616", "too large"),
            ("16777216TiB", "too large"),
            ("99999999999999999999999KiB", "too large"),
        ];
        for (text, expected) in cases {
            let reason = parse_size(text).expect_err(text);
            assert!(reason.contains(expected), "{text:?}: {reason}");
        }
    }

    #[test]
    fn format_duration_and_size() {
        let durations: &[(u64, &str)] = &[
            (0, "0s"),
            (500 * MS, "500ms"),
            (30 * S, "30s"),
            (90 * M, "1h30m"),
            (30 * D, "30d"),
            (D + S + MS, "1d1s1ms"),
        ];
        for (ms, expected) in durations {
            assert_eq!(format_duration(Duration::from_millis(*ms)), *expected);
        }
        assert_eq!(format_duration(Duration::from_nanos(1_500)), "1.5µs");
        let sizes: &[(usize, &str)] = &[
            (0, "0B"),
            (1000, "1000B"),
            (512 * KIB, "512KiB"),
            (10 * MIB, "10MiB"),
            (1536 * MIB, "1536MiB"),
            (3 << 40, "3TiB"),
        ];
        for (bytes, expected) in sizes {
            assert_eq!(format_size(*bytes), *expected);
        }
    }

    #[test]
    fn parse_bool_accepts_the_usual_spellings() {
        let cases: &[(&str, bool)] = &[
            ("true", true),
            ("TRUE", true),
            ("True", true),
            ("1", true),
            ("yes", true),
            ("Yes", true),
            ("on", true),
            ("ON", true),
            ("false", false),
            ("False", false),
            ("0", false),
            ("no", false),
            ("NO", false),
            ("off", false),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_bool(text), Ok(*expected), "{text}");
        }
        for text in [
            "", "2", "y", "n", "t", "enable", " true", "true ", "01", "yess", "o",
        ] {
            assert_eq!(parse_bool(text), Err(BOOL_EXPECTED.to_string()), "{text:?}");
        }
    }

    #[test]
    fn durations_within_a_range() {
        let range = Duration::from_millis(1)..=Duration::from_secs(86_400);
        assert_eq!(
            parse_duration_within("1ms", &range),
            Ok(Duration::from_millis(1))
        );
        assert_eq!(
            parse_duration_within("1d", &range),
            Ok(Duration::from_secs(86_400))
        );
        assert_eq!(
            parse_duration_within("0s", &range),
            Err("must be from 1ms to 1d".to_string())
        );
        assert_eq!(
            parse_duration_within("1d1ms", &range),
            Err("must be from 1ms to 1d".to_string())
        );
        assert!(
            parse_duration_within("1x", &range)
                .is_err_and(|reason| reason.contains("unknown unit"))
        );
    }

    proptest! {
        #[test]
        fn duration_round_trips(ms in any::<u64>()) {
            let duration = Duration::from_millis(ms);
            prop_assert_eq!(parse_duration(&format_duration(duration)), Ok(duration));
        }

        #[test]
        fn size_round_trips(bytes in any::<usize>()) {
            prop_assert_eq!(parse_size(&format_size(bytes)), Ok(bytes));
        }

        /// A naive model: a single `<number><unit>` part.
        #[test]
        fn duration_single_part_matches_model(number in any::<u32>(), unit_idx in 0..DURATION_UNITS.len()) {
            let (unit, unit_ms) = DURATION_UNITS[unit_idx];
            let expected = Duration::from_millis(u64::from(number) * unit_ms);
            prop_assert_eq!(parse_duration(&format!("{number}{unit}")), Ok(expected));
        }

        #[test]
        fn parsers_never_panic(text in "[0-9a-zA-Z. +\\-]{0,16}|\\PC{0,16}") {
            let _ = parse_duration(&text);
            let _ = parse_size(&text);
            let _ = validate_domain(&text);
            let _ = parse_bool(&text);
            let _ = text.parse::<crate::config::IpRange>();
        }
    }
}
