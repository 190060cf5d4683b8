//! Human-friendly quantities in the config: byte sizes ("64KiB", "10MiB", "1GB", plain integers
//! are bytes) and durations ("5s", "250ms", via humantime).

use std::time::Duration;

/// Why a size or duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    #[error("invalid size {0:?}: expected bytes as an integer or with a unit, like \"64KiB\", \"10MiB\" or \"1GB\"")]
    SizeSyntax(String),
    #[error("invalid size {text:?}: unknown unit {unit:?} (use B, KB, MB, GB, TB, KiB, MiB, GiB or TiB)")]
    SizeUnit { text: String, unit: String },
    #[error("size {0:?} is too large")]
    SizeOverflow(String),
    #[error("invalid duration {text:?}: {reason}; use a number with a unit, like \"5s\", \"250ms\" or \"2m\"")]
    Duration { text: String, reason: String },
}

/// Parses a byte size: an integer (bytes) optionally followed by a unit. Decimal units (KB, MB,
/// ...) are powers of 1000 and binary units (KiB, MiB, ...) powers of 1024, matched without
/// regard to case because "64kib" can only mean one thing.
pub fn parse_size(text: &str) -> Result<u64, UnitError> {
    let trimmed = text.trim();
    let digits_end = trimmed
        .find(|c: char| !c.is_ascii_digit() && c != '_')
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(digits_end);
    let number: String = number.chars().filter(|c| *c != '_').collect();
    if number.is_empty() {
        return Err(UnitError::SizeSyntax(text.to_owned()));
    }
    let value: u64 = number
        .parse()
        .map_err(|_| UnitError::SizeOverflow(text.to_owned()))?;
    let unit = unit.trim_start();
    let multiplier: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        _ if unit.starts_with('.') => return Err(UnitError::SizeSyntax(text.to_owned())),
        _ => {
            return Err(UnitError::SizeUnit {
                text: text.to_owned(),
                unit: unit.to_owned(),
            })
        }
    };
    value
        .checked_mul(multiplier)
        .ok_or_else(|| UnitError::SizeOverflow(text.to_owned()))
}

/// Parses a duration such as "5s", "250ms" or "1m 30s".
pub fn parse_duration(text: &str) -> Result<Duration, UnitError> {
    humantime::parse_duration(text.trim()).map_err(|e| UnitError::Duration {
        text: text.to_owned(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn sizes_with_units() {
        assert_eq!(parse_size("0").unwrap(), 0);
        assert_eq!(parse_size("1234").unwrap(), 1234);
        assert_eq!(parse_size("12B").unwrap(), 12);
        assert_eq!(parse_size("64KiB").unwrap(), 65_536);
        assert_eq!(parse_size("8KiB").unwrap(), 8192);
        assert_eq!(parse_size("10MiB").unwrap(), 10 * 1024 * 1024);
        assert_eq!(parse_size("1GB").unwrap(), 1_000_000_000);
        assert_eq!(parse_size("2 kb").unwrap(), 2000);
        assert_eq!(parse_size("3gib").unwrap(), 3 << 30);
        assert_eq!(parse_size("1TiB").unwrap(), 1 << 40);
        assert_eq!(parse_size("1_000").unwrap(), 1000);
    }

    #[test]
    fn bad_sizes() {
        assert!(matches!(parse_size(""), Err(UnitError::SizeSyntax(_))));
        assert!(matches!(parse_size("KiB"), Err(UnitError::SizeSyntax(_))));
        assert!(matches!(parse_size("-5"), Err(UnitError::SizeSyntax(_))));
        assert!(matches!(
            parse_size("1.5MiB"),
            Err(UnitError::SizeSyntax(_))
        ));
        assert_eq!(
            parse_size("10 parsecs"),
            Err(UnitError::SizeUnit {
                text: "10 parsecs".into(),
                unit: "parsecs".into()
            })
        );
        assert!(matches!(
            parse_size("99999999999999999999"),
            Err(UnitError::SizeOverflow(_))
        ));
        assert!(matches!(
            parse_size("20000000TiB"),
            Err(UnitError::SizeOverflow(_))
        ));
        let msg = parse_size("lots").unwrap_err().to_string();
        assert!(msg.contains("\"lots\"") && msg.contains("64KiB"), "{msg}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1m 30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
    }

    #[test]
    fn bad_durations() {
        let msg = parse_duration("30").unwrap_err().to_string();
        assert!(msg.starts_with("invalid duration \"30\""), "{msg}");
        assert!(msg.contains("\"5s\""), "{msg}");
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
    }
}
