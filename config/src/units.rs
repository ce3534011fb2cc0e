//! Human units: byte sizes (`"64KiB"`, `"1.5MiB"`, `65536`) and durations
//! (`"30s"`, `"250ms"`, `"1m 30s"`).
//!
//! # Sizes
//!
//! A size is a number of bytes, written either as a bare TOML integer
//! (`max_frame_size = 65536`) or as a string with an optional binary unit:
//! `B`, `KiB` (1024), `MiB` (1024²), `GiB` (1024³); units are not case
//! sensitive and may follow a space (`"64 KiB"`). A string of digits alone
//! (`"65536"`, as an environment variable carries it) is bytes too.
//!
//! A fraction is accepted when it comes to a whole number of bytes:
//! `"1.5MiB"` is 1 572 864 bytes, `"0.3KiB"` (307.2 bytes) is rejected.
//!
//! Decimal units (`KB`, `MB`, `K`, `M`) are rejected on purpose: `64KB` means
//! 64 000 bytes to some readers and 65 536 to others, and a limit that is 2%
//! off is a limit nobody notices is wrong.
//!
//! # Durations
//!
//! A duration is a string in [`humantime`] syntax: `"250ms"`, `"30s"`,
//! `"2min"`, `"1h 30m"`, `"1.5s"`. A bare number has no unit and is rejected.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;

/// A number of bytes. Parsed from the units above, shown in the largest
/// binary unit that divides it exactly (`64KiB`, `1536B`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize(u64);

impl ByteSize {
    /// `n` bytes.
    pub const fn b(n: u64) -> Self {
        Self(n)
    }

    /// `n` KiB (`n * 1024` bytes).
    pub const fn kib(n: u64) -> Self {
        Self(n * KIB)
    }

    /// `n` MiB (`n * 1024²` bytes).
    pub const fn mib(n: u64) -> Self {
        Self(n * MIB)
    }

    /// `n` GiB (`n * 1024³` bytes).
    pub const fn gib(n: u64) -> Self {
        Self(n * GIB)
    }

    /// The number of bytes.
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// The number of bytes as a `usize`, saturating on targets where it
    /// does not fit (validated sizes are at most 1GiB, so it always fits
    /// on 32- and 64-bit targets).
    pub fn as_usize(self) -> usize {
        usize::try_from(self.0).unwrap_or(usize::MAX)
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        for (unit, name) in [(GIB, "GiB"), (MIB, "MiB"), (KIB, "KiB")] {
            if n != 0 && n.is_multiple_of(unit) {
                return write!(f, "{}{name}", n / unit);
            }
        }
        write!(f, "{n}B")
    }
}

/// Why a size string did not parse. Its `Display` completes a sentence that
/// starts with the value: `"64KB" <is not a size: ...>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SizeError(String);

impl fmt::Display for SizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SizeError {}

impl FromStr for ByteSize {
    type Err = SizeError;

    fn from_str(s: &str) -> Result<Self, SizeError> {
        let s = s.trim();
        let split = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        let (number, unit) = (&s[..split], s[split..].trim_start());
        if number.is_empty() {
            return Err(SizeError(
                "is not a size (write a number of bytes or e.g. \"64KiB\", \"1MiB\")".into(),
            ));
        }
        let multiplier = match unit.to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "kib" => KIB,
            "mib" => MIB,
            "gib" => GIB,
            "k" | "kb" | "m" | "mb" | "g" | "gb" => {
                return Err(SizeError(format!(
                    "uses the decimal unit {unit:?}: write KiB, MiB or GiB (powers of 1024)"
                )));
            }
            _ => {
                return Err(SizeError(format!(
                    "has an unknown unit {unit:?} (use B, KiB, MiB or GiB)"
                )));
            }
        };
        scale(number, multiplier).map(ByteSize)
    }
}

/// `number * multiplier`, exactly, where `number` is `digits[.digits]`.
fn scale(number: &str, multiplier: u64) -> Result<u64, SizeError> {
    let bad = || SizeError("is not a number followed by a unit".into());
    let (whole, frac) = match number.split_once('.') {
        Some((w, f)) if !w.is_empty() && !f.is_empty() => (w, f),
        Some(_) => return Err(bad()),
        None => (number, ""),
    };
    if frac.contains('.') || frac.len() > 18 {
        return Err(bad());
    }
    let too_big = || SizeError("is too large".into());
    let whole: u128 = whole.parse().map_err(|_| too_big())?;
    let frac_value: u128 = if frac.is_empty() {
        0
    } else {
        frac.parse().map_err(|_| bad())?
    };
    let denominator = 10u128.pow(frac.len() as u32);
    let numerator = whole
        .checked_mul(denominator)
        .and_then(|n| n.checked_add(frac_value))
        .and_then(|n| n.checked_mul(u128::from(multiplier)))
        .ok_or_else(too_big)?;
    if numerator % denominator != 0 {
        return Err(SizeError("is not a whole number of bytes".into()));
    }
    u64::try_from(numerator / denominator).map_err(|_| too_big())
}

/// Parses a duration in [`humantime`] syntax (`"30s"`, `"250ms"`). The
/// error completes a sentence that starts with the value.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    if !s.is_empty() && s.trim().chars().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "has no unit (write e.g. \"{}s\" or \"{}ms\")",
            s.trim(),
            s.trim()
        ));
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("is not a duration ({e}; write e.g. \"30s\", \"250ms\", \"2min\")"))
}

/// Shows a duration the way it can be written back (`30s`, `1m 30s`).
pub fn format_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn size(s: &str) -> Result<u64, String> {
        s.parse::<ByteSize>()
            .map(ByteSize::as_u64)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn sizes_parse_in_binary_units() {
        assert_eq!(size("64KiB"), Ok(65_536));
        assert_eq!(size("1MiB"), Ok(1_048_576));
        assert_eq!(size("2GiB"), Ok(2 * 1024 * 1024 * 1024));
        assert_eq!(size("64 kib"), Ok(65_536));
        assert_eq!(size("512B"), Ok(512));
        assert_eq!(size("65536"), Ok(65_536));
        assert_eq!(size(" 4KiB "), Ok(4096));
        assert_eq!(size("0"), Ok(0));
    }

    #[test]
    fn fractions_must_come_to_whole_bytes() {
        assert_eq!(size("1.5MiB"), Ok(1_572_864));
        assert_eq!(size("0.5KiB"), Ok(512));
        assert!(
            size("0.3KiB")
                .unwrap_err()
                .contains("whole number of bytes")
        );
        assert!(size("1.5").unwrap_err().contains("whole number of bytes"));
        assert!(size("1.KiB").is_err());
        assert!(size(".5KiB").is_err());
        assert!(size("1.2.3KiB").is_err());
    }

    #[test]
    fn decimal_and_unknown_units_are_rejected() {
        assert!(size("64KB").unwrap_err().contains("decimal unit"));
        assert!(size("1M").unwrap_err().contains("decimal unit"));
        assert!(size("64 bytes").unwrap_err().contains("unknown unit"));
        assert!(size("KiB").unwrap_err().contains("is not a size"));
        assert!(size("").unwrap_err().contains("is not a size"));
        assert!(size("-1KiB").unwrap_err().contains("is not a size"));
        assert!(size("99999999999GiB").unwrap_err().contains("too large"));
    }

    #[test]
    fn sizes_display_in_the_largest_exact_unit() {
        assert_eq!(ByteSize::kib(64).to_string(), "64KiB");
        assert_eq!(ByteSize::mib(1).to_string(), "1MiB");
        assert_eq!(ByteSize::b(1536).to_string(), "1536B");
        assert_eq!(ByteSize::b(0).to_string(), "0B");
        assert_eq!(ByteSize::gib(3).to_string(), "3GiB");
    }

    #[test]
    fn durations_parse_with_units_only() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1m 30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("30").unwrap_err().contains("no unit"));
        assert!(
            parse_duration("soon")
                .unwrap_err()
                .contains("not a duration")
        );
        assert!(parse_duration("").unwrap_err().contains("not a duration"));
        assert_eq!(format_duration(Duration::from_secs(90)), "1m 30s");
    }
}
