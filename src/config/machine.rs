//! What the machine allows: how many cores this process may use, how much memory the
//! machine has, and its hostname. Defaults and bounds that depend on them are computed
//! here, at load time, so a config that fits one machine is checked against the one it
//! runs on.

use crate::config::domains::validate_dns_name;
use crate::config::values::{MEMORY_BYTES_PER_CORE_MIN, parse_count};

/// Cores are numbered with a `u8` elsewhere (shard ids).
pub(super) const CORES_MAX: usize = 255;
/// Used when the machine's hostname cannot be read or is not a valid domain name.
pub(super) const HOSTNAME_FALLBACK: &str = "mayfly.localdomain";

/// A core count from 1 to what this process may use (and at most [`CORES_MAX`]).
pub(super) fn parse_cores(text: &str, cores_available: usize) -> Result<usize, String> {
    let cores_max = cores_available.clamp(1, CORES_MAX);
    parse_count(text, &(1..=cores_max)).map_err(|reason| {
        if cores_available > CORES_MAX {
            format!("{reason} (at most {CORES_MAX} executors are supported)")
        } else {
            format!("{reason} (this machine has {cores_available} available cores)")
        }
    })
}

/// CPUs this process may run on (affinity and cgroup quota included), at least 1.
pub(super) fn cores_available() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// All available cores, but no more than [`CORES_MAX`], and no more than the memory
/// allows: each core's share must hold the largest message and [`MEMORY_BYTES_PER_CORE_MIN`].
/// Without this cap the defaults would not load on a machine with more than 25 cores.
pub(super) fn cores_default(
    cores_available: usize,
    memory_bytes_max: usize,
    message_bytes_max: usize,
) -> usize {
    let share_bytes_min = message_bytes_max.max(MEMORY_BYTES_PER_CORE_MIN);
    cores_available
        .min(CORES_MAX)
        .min(memory_bytes_max / share_bytes_min)
        .max(1)
}

/// What an idle SMTP session holds in memory: 5,874 bytes measured with 5,000 idle
/// sessions (greeted, EHLO answered) on one core, 2026-12-05, rounded up.
pub(super) const SMTP_SESSION_IDLE_BYTES: usize = 6 * 1024;
/// Bounds of the computed default session cap.
const SMTP_SESSIONS_DEFAULT_RANGE: std::ops::RangeInclusive<usize> = 1000..=50_000;

/// The default SMTP session cap per core: idle sessions may take a quarter of a core's
/// share of the memory budget.
pub(super) fn smtp_sessions_default(memory_bytes_max: usize, cores: usize) -> usize {
    (memory_bytes_max / cores.max(1) / 4 / SMTP_SESSION_IDLE_BYTES).clamp(
        *SMTP_SESSIONS_DEFAULT_RANGE.start(),
        *SMTP_SESSIONS_DEFAULT_RANGE.end(),
    )
}

/// The kernel's hostname if it is a valid DNS name, else [`HOSTNAME_FALLBACK`].
pub(super) fn machine_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_string())
        .filter(|name| validate_dns_name(name).is_ok())
        .unwrap_or_else(|| HOSTNAME_FALLBACK.to_string())
}

/// Total RAM from /proc/meminfo, or `None` where it cannot be read (then it is not checked).
pub(super) fn physical_memory_bytes() -> Option<usize> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|line| line.starts_with("MemTotal:"))?;
    let kib = line
        .trim_start_matches("MemTotal:")
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse::<usize>()
        .ok()?;
    kib.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::values::MIB;

    const KIB: usize = 1 << 10;

    #[test]
    fn default_cores_fit_memory() {
        // (available, memory, message) -> cores
        let cases: &[(usize, usize, usize, usize)] = &[
            (2, 256 * MIB, 10 * MIB, 2),
            (64, 256 * MIB, 10 * MIB, 25),
            (300, 1 << 40, 64 * KIB, 255),
            (8, 4 * MIB, 64 * KIB, 4),
            (4, MIB, 10 * MIB, 1),
        ];
        for (available, memory, message, expected) in cases {
            assert_eq!(cores_default(*available, *memory, *message), *expected);
        }
    }

    #[test]
    fn cores_are_bounded_by_the_machine() {
        assert_eq!(parse_cores("1", 4), Ok(1));
        assert_eq!(parse_cores("4", 4), Ok(4));
        assert_eq!(
            parse_cores("5", 4),
            Err(
                "expected a whole number from 1 to 4 (this machine has 4 available cores)"
                    .to_string()
            )
        );
        assert_eq!(
            parse_cores("256", 300),
            Err(
                "expected a whole number from 1 to 255 (at most 255 executors are supported)"
                    .to_string()
            )
        );
        assert!(
            parse_cores("1", 0).is_ok(),
            "a machine reports at least one core"
        );
    }

    #[test]
    fn machine_facts_are_sane() {
        assert!(cores_available() >= 1);
        assert_eq!(validate_dns_name(&machine_hostname()), Ok(()));
        let physical = physical_memory_bytes().expect("/proc/meminfo is readable on Linux");
        assert!(physical >= MIB);
    }
}
