use crate::DomainError;

/// How many items one page of a list holds: 1..=200, 50 when not given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageLimit(u32);

impl PageLimit {
    pub const DEFAULT: u32 = 50;
    pub const MAX: u32 = 200;

    pub fn parse(limit: Option<u32>) -> Result<Self, DomainError> {
        match limit.unwrap_or(Self::DEFAULT) {
            n @ 1..=Self::MAX => Ok(Self(n)),
            _ => Err(DomainError::invalid("limit", format!("must be between 1 and {}", Self::MAX))),
        }
    }

    pub fn get(self) -> u32 {
        self.0
    }

    /// One more than the limit: stores fetch this many to learn whether another page exists.
    pub fn probe(self) -> i64 {
        i64::from(self.0) + 1
    }
}

impl Default for PageLimit {
    fn default() -> Self {
        Self(Self::DEFAULT)
    }
}

/// Where the next page starts. Opaque to clients; a position in a list's sort order here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cursor {
    /// Lists ordered by a descending integer (version numbers, audit sequence).
    Before(i64),
    /// Lists ordered by an ascending key (artifact keys).
    After(String),
}

impl Cursor {
    pub fn encode(&self) -> String {
        match self {
            Self::Before(n) => format!("b{n}"),
            Self::After(key) => format!("a{key}"),
        }
    }

    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        let bad = || DomainError::invalid("cursor", "is not a cursor returned by this list");
        match raw.split_at_checked(1) {
            Some(("b", n)) => n.parse().map(Self::Before).map_err(|_| bad()),
            Some(("a", key)) if !key.is_empty() => Ok(Self::After(key.to_owned())),
            _ => Err(bad()),
        }
    }

    pub fn before(&self) -> Result<i64, DomainError> {
        match self {
            Self::Before(n) => Ok(*n),
            Self::After(_) => Err(DomainError::invalid("cursor", "is not a cursor returned by this list")),
        }
    }

    pub fn after(&self) -> Result<&str, DomainError> {
        match self {
            Self::After(key) => Ok(key),
            Self::Before(_) => Err(DomainError::invalid("cursor", "is not a cursor returned by this list")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_default_to_fifty_and_stay_within_bounds() {
        assert_eq!(PageLimit::parse(None).unwrap().get(), 50);
        assert_eq!(PageLimit::parse(Some(200)).unwrap().get(), 200);
        assert!(PageLimit::parse(Some(0)).is_err());
        assert!(PageLimit::parse(Some(201)).is_err());
    }

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        for c in [Cursor::Before(42), Cursor::After("prompts/a".into())] {
            assert_eq!(Cursor::parse(&c.encode()).unwrap(), c);
        }
        for bad in ["", "x1", "bnope", "a", "é"] {
            assert!(Cursor::parse(bad).is_err(), "{bad}");
        }
    }
}
