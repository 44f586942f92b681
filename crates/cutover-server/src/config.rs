//! Server configuration: defaults, overridden by a TOML file, overridden by flags and
//! environment variables (the binary applies those).

use std::collections::BTreeMap;
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
# Submit queue: a batch membership whose batch row is still missing this long after it was
# written (a create that failed or died) is pruned.
queue_prune_seconds = 600

# The key webhook secrets are encrypted with at rest: 32 bytes as base64 (`openssl rand -base64 32`).
# Unset: a key is generated on the first start and kept in <data_dir>/cutover-secret-key (0600).
# Replicas on one PostgreSQL must share one key.          env CUTOVER_SECRET_KEY
# secret_key = "…"

# Webhook deliveries never go to loopback, private, link-local, shared or cloud metadata
# addresses, checked when a webhook is created and again at every delivery. Allow exceptions
# by host name or CIDR block here.
webhook_allow = []
# webhook_allow = ["hooks.internal.example", "10.20.0.0/16"]

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

# Command executors: the only programs rollouts (and later queue checks and pool provisioners)
# can run. Declared here by the operator, named by API clients ({"type": "command", "name":
# "deploy"}, or `cutover rollout start --executor deploy`), which can never choose a program,
# arguments or paths. Each run gets a clean environment: the CUTOVER_* variables describing the
# task (CUTOVER_TARGET, CUTOVER_VERSION, CUTOVER_CONTENT_FILE, CUTOVER_IDEMPOTENCY_KEY…) and
# only the server's variables listed in `env`. None are declared by default.
#
# [executors.deploy]
# program = ["/usr/local/bin/deploy.sh", "--quiet"]  # the program and its fixed arguments
# env = ["PATH", "HOME", "KUBECONFIG"]                # passed through from the server [default: ["PATH"]]
# working_dir = "/srv/deploy"                         # [default: a new empty directory per run]
# timeout_seconds = 900                               # ceiling (and default) of a run's timeout [default: 600]
# workspaces = ["default"]                            # only these workspaces may use it [default: all]
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
    pub queue_prune_seconds: u64,
    pub log: String,
    pub log_format: LogFormat,
    pub secret_key: Option<String>,
    pub webhook_allow: Vec<String>,
    pub executors: BTreeMap<String, ExecutorConfig>,
    pub database_acquire_timeout_ms: u64,
    pub token_cache_seconds: u64,
}

/// A program the operator allows rollouts to run, under `[executors.<name>]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecutorConfig {
    /// The program and its fixed arguments.
    pub program: Vec<String>,
    /// Variables of the server's environment passed to the program.
    #[serde(default = "default_passed_env")]
    pub env: Vec<String>,
    /// Where the program runs; a new empty directory per run when unset.
    #[serde(default)]
    pub working_dir: Option<PathBuf>,
    /// The longest timeout a rollout may ask for, and the default when it asks for none
    /// (capped at 600 s for the default).
    #[serde(default = "default_timeout_ceiling")]
    pub timeout_seconds: u32,
    /// Workspaces (by name) that may use it; all when unset.
    #[serde(default)]
    pub workspaces: Option<Vec<String>>,
}

fn default_passed_env() -> Vec<String> {
    vec!["PATH".to_owned()]
}

fn default_timeout_ceiling() -> u32 {
    cutover_domain::rollouts::DEFAULT_TASK_TIMEOUT_SECONDS
}

impl ExecutorConfig {
    /// Whether a workspace of this name may use it.
    pub fn allows_workspace(&self, workspace: &str) -> bool {
        self.workspaces.as_ref().is_none_or(|names| names.iter().any(|name| name == workspace))
    }

    /// The timeout a run gets when its rollout asked for none.
    pub fn default_timeout(&self) -> u32 {
        self.timeout_seconds.min(cutover_domain::rollouts::DEFAULT_TASK_TIMEOUT_SECONDS)
    }
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
            queue_prune_seconds: 600,
            log: "info".into(),
            log_format: LogFormat::Text,
            secret_key: None,
            webhook_allow: Vec::new(),
            executors: BTreeMap::new(),
            database_acquire_timeout_ms: 1_000,
            token_cache_seconds: 60,
        }
    }
}

impl ServerConfig {
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let config: Self = toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        config.validate().with_context(|| format!("checking {}", path.display()))?;
        Ok(config)
    }

    /// Checks what parsing cannot: executor names, programs and timeouts, webhook allowances.
    pub fn validate(&self) -> anyhow::Result<()> {
        for (name, executor) in &self.executors {
            cutover_domain::rollouts::check_executor_name("executors", name)
                .map_err(|_| anyhow::anyhow!("executor name {name:?} must match ^[a-z0-9][a-z0-9_-]{{0,62}}$"))?;
            let program = executor.program.first().map(String::as_str).unwrap_or_default();
            anyhow::ensure!(!program.trim().is_empty(), "[executors.{name}] program must name a program");
            anyhow::ensure!(
                (1..=cutover_domain::rollouts::MAX_TASK_TIMEOUT_SECONDS).contains(&executor.timeout_seconds),
                "[executors.{name}] timeout_seconds must be between 1 and {}",
                cutover_domain::rollouts::MAX_TASK_TIMEOUT_SECONDS
            );
        }
        self.address_policy()?;
        if let Some(key) = &self.secret_key {
            cutover_domain::secrets::SecretKey::parse(key).map_err(|e| anyhow::anyhow!("secret_key: {e}"))?;
        }
        Ok(())
    }

    /// Where webhooks may connect: the defaults with the operator's `webhook_allow` exceptions.
    pub fn address_policy(&self) -> anyhow::Result<cutover_domain::net::AddressPolicy> {
        let allowed = self
            .webhook_allow
            .iter()
            .map(|entry| cutover_domain::net::Allowed::parse(entry).map_err(|e| anyhow::anyhow!("webhook_allow: {e}")))
            .collect::<anyhow::Result<_>>()?;
        Ok(cutover_domain::net::AddressPolicy::new(allowed))
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
            ..crate::engine::EngineConfig::default()
        }
    }

    /// The base URL webhook receivers call back on, without a trailing slash.
    pub fn public_url(&self) -> String {
        let url = self.public_url.clone().unwrap_or_else(|| format!("http://{}", self.listen));
        url.trim_end_matches('/').to_owned()
    }

    /// Settles the key webhook secrets are sealed with: `CUTOVER_SECRET_KEY`, else the
    /// `secret_key` key, else the key file in the data directory, made on the first start.
    pub fn load_secret_key(&mut self) -> anyhow::Result<()> {
        use cutover_domain::secrets::SecretKey;
        if let Some(key) = std::env::var("CUTOVER_SECRET_KEY").ok().filter(|key| !key.trim().is_empty()) {
            SecretKey::parse(&key).map_err(|e| anyhow::anyhow!("CUTOVER_SECRET_KEY: {e}"))?;
            self.secret_key = Some(key);
        }
        if self.secret_key.is_some() {
            return Ok(());
        }
        let path = self.data_dir.join(SECRET_KEY_FILE);
        let key = match std::fs::read_to_string(&path) {
            Ok(text) => SecretKey::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = SecretKey::generate();
                crate::startup::write_secret(&path, &key.encode())?;
                tracing::info!(path = %path.display(), "generated the key webhook secrets are encrypted with");
                key
            }
            Err(e) => return Err(anyhow::anyhow!("reading {}: {e}", path.display())),
        };
        self.secret_key = Some(key.encode());
        Ok(())
    }

    pub fn owner_token_path(&self) -> PathBuf {
        self.data_dir.join(OWNER_TOKEN_FILE)
    }
}

/// The file, in the data directory, that holds the first owner token.
pub const OWNER_TOKEN_FILE: &str = "cutover-owner-token";
/// The file, in the data directory, that holds the generated secret key (when none is set).
pub const SECRET_KEY_FILE: &str = "cutover-secret-key";

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
            .field("queue_prune_seconds", &self.queue_prune_seconds)
            .field("log", &self.log)
            .field("log_format", &self.log_format)
            .field("secret_key", &self.secret_key.as_ref().map(|_| "[redacted]"))
            .field("webhook_allow", &self.webhook_allow)
            .field("executors", &self.executors)
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
    fn executors_are_declared_with_defaults_and_checked() {
        let config: ServerConfig = toml::from_str(
            "[executors.deploy]\nprogram = [\"/usr/local/bin/deploy.sh\", \"--quiet\"]\nworkspaces = [\"team-a\"]\n",
        )
        .unwrap();
        config.validate().unwrap();
        let deploy = &config.executors["deploy"];
        assert_eq!(deploy.program, ["/usr/local/bin/deploy.sh", "--quiet"]);
        assert_eq!(deploy.env, ["PATH"]);
        assert_eq!((deploy.timeout_seconds, deploy.default_timeout()), (600, 600));
        assert!(deploy.allows_workspace("team-a") && !deploy.allows_workspace("default"));
        let bad = |text: &str| {
            toml::from_str::<ServerConfig>(text)
                .map_err(|e| e.to_string())
                .and_then(|c| c.validate().map_err(|e| e.to_string()))
        };
        assert!(bad("[executors.Deploy]\nprogram = [\"x\"]").unwrap_err().contains("must match"));
        assert!(bad("[executors.d]\nprogram = []").unwrap_err().contains("program"));
        assert!(bad("[executors.d]\nprogram = [\"x\"]\ntimeout_seconds = 0").unwrap_err().contains("timeout_seconds"));
        assert!(bad("[executors.d]\nprogram = [\"x\"]\nshell = true").is_err());
        assert!(bad("webhook_allow = [\"http://x\"]").unwrap_err().contains("webhook_allow"));
        assert!(bad("secret_key = \"short\"").unwrap_err().contains("secret_key"));
    }

    #[test]
    fn debug_output_hides_the_secret_key() {
        let key = cutover_domain::secrets::SecretKey::generate().encode();
        let config = ServerConfig { secret_key: Some(key.clone()), ..Default::default() };
        assert!(!format!("{config:?}").contains(&key));
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
