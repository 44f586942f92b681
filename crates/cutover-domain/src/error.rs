use std::fmt;

/// A field of the caller's input that does not satisfy a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Why the domain refused an input. Every variant is the caller's mistake (a 4xx at the edge).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("{0}")]
    Invalid(FieldError),
}

impl DomainError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid(FieldError { field: field.into(), message: message.into() })
    }

    pub fn field(&self) -> &str {
        match self {
            Self::Invalid(e) => &e.field,
        }
    }
}
