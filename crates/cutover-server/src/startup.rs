//! Starting the server: logging, database, migrations, first-start bootstrap, serving, shutdown.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

use anyhow::Context;
use cutover_domain::WorkspaceName;
use cutover_store::{ConnectOptions, Store};
use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, ServerConfig};
use crate::{AppState, app};

/// Name of the administrative workspace made on first start.
const FIRST_WORKSPACE: &str = "default";

fn init_logging(config: &ServerConfig) {
    let filter = EnvFilter::try_from_env("CUTOVER_LOG").unwrap_or_else(|_| EnvFilter::new(&config.log));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    // A second initialisation (tests) keeps the first subscriber.
    let _ = match config.log_format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

async fn connect(config: &ServerConfig) -> anyhow::Result<Store> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    let options = ConnectOptions {
        max_connections: config.max_connections,
        acquire_timeout: std::time::Duration::from_millis(config.database_acquire_timeout_ms.max(1)),
        ..ConnectOptions::default()
    };
    Store::connect(&config.database_url(), &options).await.context("connecting to the database")
}

/// `cutover migrate`: applies pending migrations and returns how many there were.
pub async fn migrate(config: &ServerConfig) -> anyhow::Result<usize> {
    let store = connect(config).await?;
    let applied = store.migrate().await?;
    store.close().await;
    Ok(applied)
}

/// `cutover serve`: runs until SIGINT or SIGTERM, then drains in-flight requests.
pub async fn run(mut config: ServerConfig) -> anyhow::Result<()> {
    init_logging(&config);
    config.validate()?;
    config.load_secret_key()?;
    tracing::info!(?config, "starting cutover");
    let store = connect(&config).await?;
    if config.migrate {
        let applied = store.migrate().await?;
        if applied > 0 {
            tracing::info!(applied, "applied database migrations");
        }
    } else {
        store.check_schema().await?;
    }
    bootstrap(&store, &config).await?;

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    tracing::info!(address = %listener.local_addr()?, engine = ?store.kind(), "serving");
    let state = AppState::new(store.clone(), config);
    let sealed = store.seal_plain_webhook_secrets(|plain| state.admission.seal(plain)).await?;
    if sealed > 0 {
        tracing::info!(sealed, "encrypted webhook secrets stored in plain text by an earlier version");
    }
    state.resolver.load_all().await.context("building the resolve snapshot")?;
    let refresher = crate::resolve::notify::spawn(
        store.clone(),
        state.resolver.clone(),
        state.tokens.clone(),
        state.shutdown.subscribe(),
    );
    // Stopped after the drain below, not with the change streams: a request still being answered
    // when shutdown begins may buffer an exposure, and the flusher's last flush must see it.
    let (stop_flusher, flusher_stop) = tokio::sync::watch::channel(false);
    let flusher = state.exposures.clone().spawn(
        store.clone(),
        std::time::Duration::from_millis(state.config.exposure_flush_ms.max(1)),
        flusher_stop,
    );
    let engine = state.start_engine()?;
    let stopping = state.shutdown.clone();
    axum::serve(listener, app(state))
        .with_graceful_shutdown(async move {
            shutdown_signal().await;
            // Ends the change streams, so that the drain below can finish.
            stopping.send_replace(true);
        })
        .await?;
    let _ = refresher.await;
    // After the drain: the last exposures resolve buffered are written before the store closes.
    stop_flusher.send_replace(true);
    let _ = flusher.await;
    // Within the engine's shutdown deadline: running tasks finish or are stopped, leases released.
    let _ = engine.await;
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// On the first start, makes the administrative workspace and shows its owner token once:
/// printed to stdout and saved, mode 0600, in the data directory for the CLI.
async fn bootstrap(store: &Store, config: &ServerConfig) -> anyhow::Result<()> {
    let name = WorkspaceName::parse(FIRST_WORKSPACE)?;
    let Some(made) = store.bootstrap(&name).await? else { return Ok(()) };
    let path = config.owner_token_path();
    write_secret(&path, made.secret.expose())?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "Created workspace {:?}. Its owner token (shown once, saved to {}):\n\n    {}\n",
        made.workspace.name,
        path.display(),
        made.secret.expose()
    )?;
    if let Some(hint) = cli_hint(config.listen) {
        writeln!(out, "{hint}\n")?;
    }
    Ok(())
}

/// How to point the CLI at a server that does not listen where the CLI looks by default
/// (`http://127.0.0.1:7300`); `None` when it does.
fn cli_hint(listen: SocketAddr) -> Option<String> {
    let default = ServerConfig::default().listen;
    if listen == default {
        return None;
    }
    // A wildcard address is reached through the loopback of the same family.
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let url = format!("http://{}", SocketAddr::new(ip, listen.port()));
    Some(format!(
        "This server listens on {listen}, not where the CLI looks by default (http://{default}). Point the CLI at \
         it with:\n\n    export CUTOVER_SERVER={url}\n\nor give `--server {url}` to each command."
    ))
}

pub(crate) fn write_secret(path: &Path, secret: &str) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).with_context(|| format!("writing {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    writeln!(file, "{secret}")?;
    Ok(())
}

async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}

#[cfg(test)]
mod tests {
    use super::cli_hint;

    #[test]
    fn the_default_address_needs_no_hint() {
        assert_eq!(cli_hint("127.0.0.1:7300".parse().unwrap()), None);
    }

    #[test]
    fn another_address_is_named_as_the_cli_should_reach_it() {
        let hint = cli_hint("127.0.0.1:7505".parse().unwrap()).unwrap();
        assert!(hint.contains("export CUTOVER_SERVER=http://127.0.0.1:7505\n"), "{hint}");
        assert!(hint.contains("`--server http://127.0.0.1:7505`"), "{hint}");
        let wildcard = cli_hint("0.0.0.0:7300".parse().unwrap()).unwrap();
        assert!(wildcard.contains("CUTOVER_SERVER=http://127.0.0.1:7300\n"), "{wildcard}");
        let v6 = cli_hint("[::]:7400".parse().unwrap()).unwrap();
        assert!(v6.contains("CUTOVER_SERVER=http://[::1]:7400\n"), "{v6}");
    }
}
