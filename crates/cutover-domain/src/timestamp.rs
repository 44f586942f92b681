use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Serialize, Serializer};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A point in time, microseconds since the Unix epoch: how both engines store it (BIGINT).
/// Serialised as RFC 3339 in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    pub fn now() -> Self {
        let micros = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros());
        Self(i64::try_from(micros).unwrap_or(i64::MAX))
    }

    pub fn from_micros(micros: i64) -> Self {
        Self(micros)
    }

    pub fn as_micros(self) -> i64 {
        self.0
    }

    /// Parses an RFC 3339 date-time (any offset), e.g. `2026-11-22T08:00:00Z`.
    pub fn parse_rfc3339(field: &'static str, text: &str) -> Result<Self, crate::DomainError> {
        let parsed = OffsetDateTime::parse(text, &Rfc3339)
            .map_err(|_| crate::DomainError::invalid(field, format!("{text:?} is not an RFC 3339 date-time")))?;
        i64::try_from(parsed.unix_timestamp_nanos() / 1_000)
            .map(Self)
            .map_err(|_| crate::DomainError::invalid(field, format!("{text:?} is out of range")))
    }

    pub fn to_rfc3339(self) -> String {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0) * 1_000)
            .ok()
            .and_then(|t| t.format(&Rfc3339).ok())
            .unwrap_or_else(|| self.0.to_string())
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_rfc3339())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_as_rfc3339_utc_with_microseconds() {
        assert_eq!(Timestamp::from_micros(1_700_000_000_123_456).to_rfc3339(), "2023-11-14T22:13:20.123456Z");
        assert_eq!(Timestamp::from_micros(0).to_rfc3339(), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn rfc3339_parses_any_offset_and_round_trips() {
        let t = Timestamp::parse_rfc3339("at", "2023-11-14T22:13:20.123456Z").unwrap();
        assert_eq!(t.as_micros(), 1_700_000_000_123_456);
        assert_eq!(Timestamp::parse_rfc3339("at", "2023-11-14T23:13:20.123456+01:00").unwrap(), t);
        for bad in ["", "yesterday", "2023-11-14", "2023-11-14T22:13:20"] {
            let err = Timestamp::parse_rfc3339("at", bad).unwrap_err();
            assert_eq!(err.field(), "at", "{bad}");
        }
    }
}
