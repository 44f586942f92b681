use serde_json::Value;

/// Why a store operation did not happen. Everything but `Database`, `Corrupt` and `Unavailable`
/// is the caller's doing and maps to a 4xx at the edge.
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
    /// The artifact is archived: it takes no new versions, pins, experiments, rollouts or pools
    /// until it is unarchived (409 `artifact_archived`).
    #[error("{0}")]
    Archived(String),
    /// The artifact is referenced by objects that keep it alive; `details` names them
    /// (409 `artifact_in_use`).
    #[error("{message}")]
    InUse { message: String, details: Value },
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
    /// The database cannot be reached (refused, timed out, connection lost): nothing was done,
    /// and the same request may work later. 503 at the edge.
    #[error("the database is not reachable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Database(sqlx::Error),
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl StoreError {
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::Conflict { message: message.into(), details: None }
    }

    /// Whether the database could not be reached, as opposed to refusing what was asked.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

/// Errors that say the database could not be reached or the connection broke, rather than that
/// it refused a statement: pool timeouts, IO and TLS failures, and PostgreSQL's connection
/// exceptions (SQLSTATE class 08), shutdowns and "cannot connect now" (57P01–57P03), and "too
/// many connections" (53300).
fn is_connection_error(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            db.code().is_some_and(|c| c.starts_with("08") || matches!(&*c, "57P01" | "57P02" | "57P03" | "53300"))
        }
        _ => false,
    }
}

/// The one place database errors become domain errors: a missing row is "not found", and a
/// unique or foreign key violation is a conflict (409 at the edge), never a 500.
impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        match &err {
            e if is_connection_error(e) => Self::Unavailable(err.to_string()),
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

#[cfg(test)]
mod tests {
    use std::io::ErrorKind;

    use super::*;

    #[test]
    fn a_database_that_cannot_be_reached_is_unavailable_not_a_fault() {
        for err in [
            sqlx::Error::PoolTimedOut,
            sqlx::Error::PoolClosed,
            sqlx::Error::Io(ErrorKind::ConnectionRefused.into()),
            sqlx::Error::Io(ErrorKind::UnexpectedEof.into()),
        ] {
            assert!(StoreError::from(err).is_unavailable());
        }
        assert!(matches!(StoreError::from(sqlx::Error::RowNotFound), StoreError::NotFound(_)));
        assert!(matches!(StoreError::from(sqlx::Error::ColumnNotFound("x".into())), StoreError::Database(_)));
    }
}
