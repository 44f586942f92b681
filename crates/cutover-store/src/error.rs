use serde_json::Value;

/// Why a store operation did not happen. Everything but `Database` and `Corrupt` is the caller's
/// doing and maps to a 4xx at the edge.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(String),
    /// The input broke a domain rule that needs stored state to check (e.g. a version's
    /// content against its artifact's value type).
    #[error(transparent)]
    Invalid(#[from] cutover_domain::DomainError),
    /// Several named objects do not exist (e.g. environments listed in a request).
    #[error("{what} not found: {}", names.join(", "))]
    NotFoundMany { what: &'static str, names: Vec<String> },
    #[error("{message}")]
    Conflict { message: String, details: Option<Value> },
    #[error("{0}")]
    LimitReached(String),
    /// An experiment action its current status does not allow (409 naming the status).
    #[error(transparent)]
    IllegalTransition(#[from] cutover_domain::IllegalTransition),
    /// A rollout control its current state does not allow (409 naming the state).
    #[error(transparent)]
    IllegalControl(#[from] cutover_domain::rollouts::IllegalControl),
    /// The caller's token may not do this to this object.
    #[error("{0}")]
    Forbidden(String),
    /// `If-Match` named a revision that is no longer current.
    #[error("{what} changed since revision {expected}; it is now at revision {current}")]
    PreconditionFailed { what: String, expected: i64, current: i64 },
    #[error("the database schema is at version {found}, newer than this binary knows ({known}); upgrade cutover")]
    SchemaTooNew { found: i64, known: i64 },
    #[error("the database schema has {0} pending migration(s); run `cutover migrate` or start without --no-migrate")]
    SchemaBehind(usize),
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    #[error("unsupported database url {0:?}: use sqlite://PATH or postgres://...")]
    UnsupportedUrl(String),
    #[error(transparent)]
    Database(sqlx::Error),
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl StoreError {
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::Conflict { message: message.into(), details: None }
    }
}

/// The one place database errors become domain errors: a missing row is "not found", and a
/// unique or foreign key violation is a conflict (409 at the edge), never a 500.
impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        match &err {
            sqlx::Error::RowNotFound => Self::NotFound("object".into()),
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                Self::conflict("conflicts with an object that already exists")
            }
            sqlx::Error::Database(db) if db.is_foreign_key_violation() => {
                Self::conflict("is still referenced by other objects")
            }
            // SQLSTATE class 22, "data exception": a value the database cannot hold, such as a
            // NUL character in text. The caller sent it; it is not a server fault.
            sqlx::Error::Database(db) if db.code().is_some_and(|c| c.starts_with("22")) => {
                Self::Invalid(cutover_domain::DomainError::invalid("value", db.message().to_owned()))
            }
            _ => Self::Database(err),
        }
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(err: serde_json::Error) -> Self {
        Self::Corrupt(err.to_string())
    }
}
