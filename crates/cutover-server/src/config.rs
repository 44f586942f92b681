//! Server configuration: defaults, overridden by a TOML file, overridden by flags and
//! environment variables (the binary applies those).

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

/// A commented example of every configuration key, printed by `cutover config example`.
pub const EXAMPLE: &str = r#"# Cutover server configuration (TOML). Every key is optional; the values shown are the defaults.
# Precedence: command-line flag > environment variable > this file > default.

# Address and port to listen on.                              flag --listen, env CUTOVER_LISTEN
listen = "127.0.0.1:7300"

# The address webhook receivers call back on (a rollout task's callback_url starts with it):
# how this server is reached from outside, behind any proxy. Default: http://<listen>.
# public_url = "https://cutover.example.com"

# Database. Leave unset for the embedded SQLite database at <data_dir>/cutover.db.
# PostgreSQL (14 or newer): "postgres://user:password@host:5432/cutover".
#                                                             flag --database-url, env CUTOVER_DATABASE_URL
# database_url = "postgres://postgres@127.0.0.1:5432/cutover"

# Where the SQLite database and the first owner token (cutover-owner-token, mode 0600) live.
#                                                             flag --data-dir, env CUTOVER_DATA_DIR
data_dir = "."

# Apply pending migrations at start-up. When false, the server refuses to start on a schema
# that is not exactly the one it expects (run `cutover migrate`).
#                                                             flag --no-migrate, env CUTOVER_NO_MIGRATE
migrate = true

# Largest request body accepted, in bytes; larger bodies get 413.
#                                                             flag --max-body-bytes, env CUTOVER_MAX_BODY_BYTES
max_body_bytes = 1048576

# Most environments one workspace may have.                   flag --max-environments, env CUTOVER_MAX_ENVIRONMENTS
max_environments = 100

# Most pooled database connections.                           flag --max-connections, env CUTOVER_MAX_CONNECTIONS
max_connections = 16

# How often exposures (which user saw which experiment variant) are written, in milliseconds.
# Resolve buffers them in memory: a crash loses at most this much of them.
exposure_flush_ms = 1000

# The engine (rollouts): how long a replica's lease on a rollout lasts without renewal (another
# replica, or this one restarted, takes over a crashed replica's rollouts after it), how often
# every rollout is looked at without being woken, and how long shutdown waits for running tasks
# before stopping them.
engine_lease_seconds = 15
engine_tick_ms = 1000
engine_shutdown_seconds = 10

# Log filter (tracing EnvFilter syntax) and format ("text" or "json").
#                                                             env CUTOVER_LOG, CUTOVER_LOG_FORMAT
log = "info"
log_format = "text"

# How long a request waits for a database connection (PostgreSQL) before the database counts as
# unreachable: the request answers 503 with Retry-After, and later ones answer 503 at once until
# a background probe reaches the database again.
database_acquire_timeout_ms = 1000

# How long a token checked against the database is trusted before it is checked again (in the
# background: requests never wait for it). Revocations arrive at once through change notices;
# this bounds a missed one. While the database is unreachable, cached tokens stay valid.
token_cache_seconds = 60
"#;

#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub public_url: Option<String>,
    pub database_url: Option<String>,
    pub data_dir: PathBuf,
    pub migrate: bool,
    pub max_body_bytes: usize,
    pub max_environments: u32,
    pub max_connections: u32,
    pub exposure_flush_ms: u64,
    pub engine_lease_seconds: u64,
    pub engine_tick_ms: u64,
    pub engine_shutdown_seconds: u64,
    pub log: String,
    pub log_format: LogFormat,
    pub database_acquire_timeout_ms: u64,
    pub token_cache_seconds: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7300)),
            public_url: None,
            database_url: None,
            data_dir: PathBuf::from("."),
            migrate: true,
            max_body_bytes: 1024 * 1024,
            max_environments: cutover_domain::limits::DEFAULT_MAX_ENVIRONMENTS,
            max_connections: 16,
            exposure_flush_ms: 1_000,
            engine_lease_seconds: 15,
            engine_tick_ms: 1_000,
            engine_shutdown_seconds: 10,
            log: "info".into(),
            log_format: LogFormat::Text,
            database_acquire_timeout_ms: 1_000,
            token_cache_seconds: 60,
        }
    }
}

impl ServerConfig {
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// The database to use: the configured url, or SQLite in the data directory.
    pub fn database_url(&self) -> String {
        self.database_url.clone().unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("cutover.db").display()))
    }

    /// The engine's settings.
    pub fn engine(&self) -> crate::engine::EngineConfig {
        use std::time::Duration;
        crate::engine::EngineConfig {
            lease: Duration::from_secs(self.engine_lease_seconds.max(1)),
            tick: Duration::from_millis(self.engine_tick_ms.max(10)),
            shutdown_deadline: Duration::from_secs(self.engine_shutdown_seconds),
        }
    }

    /// The base URL webhook receivers call back on, without a trailing slash.
    pub fn public_url(&self) -> String {
        let url = self.public_url.clone().unwrap_or_else(|| format!("http://{}", self.listen));
        url.trim_end_matches('/').to_owned()
    }

    pub fn owner_token_path(&self) -> PathBuf {
        self.data_dir.join(OWNER_TOKEN_FILE)
    }
}

/// The file, in the data directory, that holds the first owner token.
pub const OWNER_TOKEN_FILE: &str = "cutover-owner-token";

/// Hides a database password.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:[redacted]{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

impl fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerConfig")
            .field("listen", &self.listen)
            .field("public_url", &self.public_url)
            .field("database_url", &self.database_url.as_deref().map(redact))
            .field("data_dir", &self.data_dir)
            .field("migrate", &self.migrate)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("max_environments", &self.max_environments)
            .field("max_connections", &self.max_connections)
            .field("exposure_flush_ms", &self.exposure_flush_ms)
            .field("engine_lease_seconds", &self.engine_lease_seconds)
            .field("engine_tick_ms", &self.engine_tick_ms)
            .field("engine_shutdown_seconds", &self.engine_shutdown_seconds)
            .field("log", &self.log)
            .field("log_format", &self.log_format)
            .field("database_acquire_timeout_ms", &self.database_acquire_timeout_ms)
            .field("token_cache_seconds", &self.token_cache_seconds)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_parses_to_the_defaults() {
        let example: ServerConfig = toml::from_str(EXAMPLE).unwrap();
        let defaults = ServerConfig::default();
        assert_eq!(format!("{example:?}"), format!("{defaults:?}"));
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(toml::from_str::<ServerConfig>("listne = \"127.0.0.1:1\"").is_err());
    }

    #[test]
    fn debug_output_hides_the_database_password() {
        let config =
            ServerConfig { database_url: Some("postgres://app:hunter2@db:5432/c".into()), ..Default::default() };
        let printed = format!("{config:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(printed.contains("postgres://app:[redacted]@db:5432/c"), "{printed}");
    }
}
