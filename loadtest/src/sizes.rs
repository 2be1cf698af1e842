//! Message size distributions: `--size BYTES` or `--size-dist "1024:0.8,102400:0.2"`.
//!
//! A distribution is a short list of (size, weight) classes. Each class gets one
//! precomputed message template, so picking a size per message is a table lookup driven by
//! a cheap deterministic generator, not an allocation.

use anyhow::{Context, bail};

/// Largest message size accepted on the command line (64 MiB): bigger is a typo, and every
/// size class is held in memory once per thread.
pub const SIZE_BYTES_MAX: usize = 64 << 20;

/// Most classes in a `--size-dist` list.
pub const SIZE_CLASSES_MAX: usize = 64;

/// One size class: messages of about `size_bytes`, picked with probability `weight / total`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SizeClass {
    /// Target size of the whole message (header block and body) in bytes.
    pub size_bytes: usize,
    /// Relative weight; weights need not sum to 1.
    pub weight: f64,
}

/// Parses `"1024:0.8,102400:0.2"`. Sizes accept the suffixes `k`/`K` (×1024) and `m`/`M`.
///
/// # Errors
/// On an empty list, a bad number, a weight that is not positive and finite, or a size out of range.
pub fn parse_size_dist(text: &str) -> anyhow::Result<Vec<SizeClass>> {
    let mut classes = Vec::new();
    for item in text
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
    {
        let (size_text, weight_text) = item
            .split_once(':')
            .with_context(|| format!("size class {item:?} is not SIZE:WEIGHT"))?;
        let size_bytes = parse_size(size_text)?;
        let weight: f64 = weight_text
            .trim()
            .parse()
            .with_context(|| format!("weight {weight_text:?} is not a number"))?;
        if !(weight.is_finite() && weight > 0.0) {
            bail!("weight {weight_text:?} must be a positive number");
        }
        classes.push(SizeClass { size_bytes, weight });
    }
    if classes.is_empty() {
        bail!("size distribution {text:?} has no classes");
    }
    if classes.len() > SIZE_CLASSES_MAX {
        bail!(
            "size distribution has {} classes; at most {SIZE_CLASSES_MAX}",
            classes.len()
        );
    }
    Ok(classes)
}

/// Parses a byte count such as `1024`, `64k` or `1M`.
///
/// # Errors
/// When the text is not a number or the size is 0 or above [`SIZE_BYTES_MAX`].
pub fn parse_size(text: &str) -> anyhow::Result<usize> {
    let text = text.trim();
    let (digits, multiplier) = match text.as_bytes().last() {
        Some(b'k' | b'K') => (&text[..text.len() - 1], 1024),
        Some(b'm' | b'M') => (&text[..text.len() - 1], 1024 * 1024),
        _ => (text, 1),
    };
    let number: usize = digits
        .parse()
        .with_context(|| format!("size {text:?} is not a number"))?;
    let size_bytes = number
        .checked_mul(multiplier)
        .with_context(|| format!("size {text:?} is too large"))?;
    if size_bytes == 0 || size_bytes > SIZE_BYTES_MAX {
        bail!("size {text:?} must be between 1 and {SIZE_BYTES_MAX} bytes");
    }
    Ok(size_bytes)
}

/// Picks class indexes with the configured probabilities.
#[derive(Debug, Clone)]
pub struct ClassPicker {
    /// Cumulative weights scaled to `u64::MAX`; the last one is `u64::MAX`.
    cumulative: Vec<u64>,
    rng: SplitMix64,
}

impl ClassPicker {
    /// A picker over `weights` (at least one, all positive), seeded for reproducible runs.
    ///
    /// # Panics
    /// If `weights` is empty (a programmer error: parsing guarantees a class).
    pub fn new(weights: &[f64], seed: u64) -> Self {
        assert!(
            !weights.is_empty(),
            "a size distribution has at least one class"
        );
        let total: f64 = weights.iter().sum();
        let mut running = 0.0;
        let mut cumulative: Vec<u64> = weights
            .iter()
            .map(|weight| {
                running += weight;
                // Float-to-int `as` saturates, which is what we want at the top end.
                (running / total * u64::MAX as f64) as u64
            })
            .collect();
        if let Some(last) = cumulative.last_mut() {
            *last = u64::MAX;
        }
        Self {
            cumulative,
            rng: SplitMix64(seed),
        }
    }

    /// The next class index.
    pub fn pick(&mut self) -> usize {
        if self.cumulative.len() == 1 {
            return 0;
        }
        let draw = self.rng.next_u64();
        self.cumulative
            .partition_point(|&bound| bound < draw)
            .min(self.cumulative.len() - 1)
    }
}

/// SplitMix64: tiny, fast, good enough to pick sizes and body letters.
#[derive(Debug, Clone)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    /// The next 64 pseudo-random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_distributions() {
        let cases: &[(&str, &[(usize, f64)])] = &[
            ("1024:0.8,102400:0.2", &[(1024, 0.8), (102_400, 0.2)]),
            ("1k:1", &[(1024, 1.0)]),
            (" 2M:3 , 10:1 ,", &[(2 << 20, 3.0), (10, 1.0)]),
        ];
        for &(text, expected) in cases {
            let classes = parse_size_dist(text).unwrap();
            let got: Vec<(usize, f64)> = classes.iter().map(|c| (c.size_bytes, c.weight)).collect();
            assert_eq!(got, expected, "{text}");
        }
    }

    #[test]
    fn rejects_bad_distributions() {
        let bad = [
            "", ",", "1024", "1024:", ":0.5", "x:1", "1024:0", "1024:-1", "1024:nan", "1024:inf",
            "0:1", "65M:1",
        ];
        for text in bad {
            assert!(
                parse_size_dist(text).is_err(),
                "{text:?} should be rejected"
            );
        }
        let too_many = vec!["10:1"; SIZE_CLASSES_MAX + 1].join(",");
        assert!(parse_size_dist(&too_many).is_err());
    }

    #[test]
    fn sizes() {
        let cases: &[(&str, Option<usize>)] = &[
            ("1", Some(1)),
            ("64k", Some(65_536)),
            ("64M", Some(SIZE_BYTES_MAX)),
            ("0", None),
            ("-1", None),
            ("1G", None),
        ];
        for &(text, expected) in cases {
            assert_eq!(parse_size(text).ok(), expected, "{text}");
        }
    }

    #[test]
    fn picker_follows_weights() {
        let mut picker = ClassPicker::new(&[0.8, 0.2], 7);
        let n_draws = 100_000;
        let mut counts = [0usize; 2];
        for _ in 0..n_draws {
            counts[picker.pick()] += 1;
        }
        let share = counts[0] as f64 / n_draws as f64;
        assert!((share - 0.8).abs() < 0.01, "share of class 0 was {share}");
        let mut single = ClassPicker::new(&[5.0], 1);
        assert!((0..100).all(|_| single.pick() == 0));
    }
}
