//! `cutover serve`, `cutover migrate` and `cutover config`: the server side of the binary.
//!
//! Configuration is layered: defaults, then the TOML file given by `--config`, then each flag
//! (or its environment variable) that is set.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::builder::BoolishValueParser;
use clap::{Args, Subcommand};
use cutover_server::config::{EXAMPLE, ServerConfig};

use crate::output;

/// Flags shared by `serve` and `migrate`. The data directory is the global `--data-dir`.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// TOML configuration file; `cutover config example` prints one.
    #[arg(long, env = "CUTOVER_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address and port to listen on; a port alone means 127.0.0.1:PORT [default: 127.0.0.1:7300]
    #[arg(long, env = "CUTOVER_LISTEN", value_name = "ADDR", value_parser = crate::args::listen_address)]
    listen: Option<SocketAddr>,
    /// postgres://… for PostgreSQL; the embedded SQLite database in the data directory when
    /// absent.
    #[arg(long, env = "CUTOVER_DATABASE_URL", value_name = "URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Largest request body accepted, in bytes [default: 1048576]
    #[arg(long, env = "CUTOVER_MAX_BODY_BYTES", value_name = "N")]
    max_body_bytes: Option<usize>,
    /// Most environments one workspace may have [default: 100]
    #[arg(long, env = "CUTOVER_MAX_ENVIRONMENTS", value_name = "N")]
    max_environments: Option<u32>,
    /// Most pooled database connections [default: 16]
    #[arg(long, env = "CUTOVER_MAX_CONNECTIONS", value_name = "N")]
    max_connections: Option<u32>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Do not apply pending migrations at start-up; refuse to start on an outdated schema.
    #[arg(long, env = "CUTOVER_NO_MIGRATE", value_parser = BoolishValueParser::new())]
    no_migrate: bool,
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Prints a commented example configuration file with every key and its default.
    Example,
}

impl ServerArgs {
    /// The defaults, overridden by the file, overridden by the flags that are set.
    fn config(&self, data_dir: Option<&Path>) -> anyhow::Result<ServerConfig> {
        let mut config = match &self.config {
            Some(path) => ServerConfig::from_file(path)?,
            None => ServerConfig::default(),
        };
        if let Some(listen) = self.listen {
            config.listen = listen;
        }
        if let Some(url) = &self.database_url {
            config.database_url = Some(url.clone());
        }
        if let Some(dir) = data_dir {
            config.data_dir = dir.to_owned();
        }
        if let Some(bytes) = self.max_body_bytes {
            config.max_body_bytes = bytes;
        }
        if let Some(count) = self.max_environments {
            config.max_environments = count;
        }
        if let Some(count) = self.max_connections {
            config.max_connections = count;
        }
        Ok(config)
    }
}

pub async fn serve(args: &ServeArgs, data_dir: Option<&Path>) -> anyhow::Result<()> {
    let mut config = args.server.config(data_dir)?;
    if args.no_migrate {
        config.migrate = false;
    }
    cutover_server::run(config).await
}

pub async fn migrate(args: &MigrateArgs, data_dir: Option<&Path>) -> anyhow::Result<()> {
    let applied = cutover_server::migrate(&args.server.config(data_dir)?).await?;
    output::emit(&format!("applied {applied} migration(s)"))
}

pub fn config(command: &ConfigCommand) -> anyhow::Result<()> {
    match command {
        ConfigCommand::Example => output::emit(EXAMPLE.trim_end()),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::path::Path;

    use crate::cli::Command;

    fn serve_config(args: &[&str]) -> cutover_server::config::ServerConfig {
        let cli = crate::cli::parse_from(args).unwrap();
        let Command::Serve(serve) = cli.command else { panic!("not serve") };
        serve.server.config(cli.global.data_dir.as_deref()).unwrap()
    }

    #[test]
    fn without_flags_or_file_the_defaults_stand() {
        let config = serve_config(&["cutover", "serve"]);
        let defaults = cutover_server::config::ServerConfig::default();
        assert_eq!(config.listen, defaults.listen);
        assert_eq!(config.data_dir, defaults.data_dir);
    }

    #[test]
    fn flags_override_the_file_which_overrides_the_defaults() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        writeln!(file, "listen = \"127.0.0.1:9000\"\nmax_connections = 3").unwrap();
        let path = file.path().to_str().unwrap();
        let config = serve_config(&[
            "cutover",
            "serve",
            "--config",
            path,
            "--max-connections",
            "7",
            "--data-dir",
            "/srv/cutover",
        ]);
        assert_eq!(config.listen.port(), 9000);
        assert_eq!(config.max_connections, 7);
        assert_eq!(config.data_dir, Path::new("/srv/cutover"));
    }
}
