//! Humane durations as written in `moat.toml` and on the command line: `10s`, `500ms`, `1m30s`.

use std::time::Duration;

/// Parses a duration made of one or more `<number><unit>` parts, units `ms`, `s`, `m`, `h`.
///
/// Returns a message fit to follow the field path when the text is not such a duration.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    let invalid =
        || format!("{text:?} is not a duration; write e.g. \"10s\", \"500ms\" or \"1m30s\"");
    if trimmed.is_empty() {
        return Err(invalid());
    }
    let mut total = Duration::ZERO;
    let mut rest = trimmed;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(invalid());
        }
        let number: u64 = rest[..digits].parse().map_err(|_| invalid())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let part = match &rest[..unit_len] {
            "ms" => Duration::from_millis(number),
            "s" => Duration::from_secs(number),
            "m" => Duration::from_secs(number.saturating_mul(60)),
            "h" => Duration::from_secs(number.saturating_mul(3600)),
            "" => {
                return Err(format!(
                    "{text:?} has no unit; write e.g. \"{number}s\" (units: ms, s, m, h)"
                ));
            }
            _ => return Err(invalid()),
        };
        total = total.saturating_add(part);
        rest = &rest[unit_len..];
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_each_unit_and_combinations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
    }

    #[test]
    fn rejects_missing_unit_and_garbage() {
        assert!(parse_duration("10").unwrap_err().contains("has no unit"));
        assert!(parse_duration("ten seconds").is_err());
        assert!(parse_duration("10 parsecs").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("5d").is_err());
    }
}
