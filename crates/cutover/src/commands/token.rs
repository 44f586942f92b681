//! `cutover token`: the workspace's API credentials.

use clap::{Subcommand, ValueEnum};
use cutover_api::{CreateToken, Token, TokenCreated};

use super::Context;
use crate::output::{self, OutputFormat};

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Lists the workspace's tokens, revoked ones included.
    List,
    /// Creates a token and prints its secret, once.
    Create {
        name: String,
        #[arg(long, value_enum)]
        role: Role,
        /// Limits the token to an environment; repeat for several. An `sdk` token needs exactly
        /// one.
        #[arg(long = "env", value_name = "NAME")]
        environments: Vec<String>,
    },
    /// Revokes a token: it stops working at once.
    Revoke { id: String },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Role {
    /// Everything, including environments, tokens and protected environments.
    Owner,
    /// Artifacts, versions and what is live in unprotected environments.
    Editor,
    /// Reads only.
    Viewer,
    /// Resolve only, in one environment: for applications and OpenFeature providers.
    Sdk,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Editor => "editor",
            Self::Viewer => "viewer",
            Self::Sdk => "sdk",
        }
    }
}

pub async fn run(context: &Context, command: TokenCommand) -> anyhow::Result<()> {
    let client = &context.client;
    match command {
        TokenCommand::List => {
            let page = client.list_tokens().await?;
            if context.output == OutputFormat::Json {
                return output::json(&page);
            }
            let rows = page.items.iter().map(|token| {
                [
                    token.id.clone(),
                    token.name.clone(),
                    token.role.clone(),
                    environments(token),
                    token.created_at.clone(),
                    status(token),
                ]
            });
            output::emit(&output::table(["ID", "NAME", "ROLE", "ENVIRONMENTS", "CREATED", "STATUS"], rows))
        }
        TokenCommand::Create { name, role, environments } => {
            let body = CreateToken {
                name,
                role: role.as_str().to_owned(),
                environments: (!environments.is_empty()).then_some(environments),
            };
            let created = client.create_token(&body).await?;
            if context.output == OutputFormat::Json {
                return output::json(&created);
            }
            output::emit(&secret_notice(&created))
        }
        TokenCommand::Revoke { id } => {
            let token = client.revoke_token(&id).await?;
            if context.output == OutputFormat::Json {
                return output::json(&token);
            }
            output::emit(&format!("revoked token {} ({})", token.name, token.id))
        }
    }
}

/// A new token's secret, set apart so that it is easy to copy, and the warning that goes with it.
pub fn secret_notice(created: &TokenCreated) -> String {
    let token = &created.token;
    format!(
        "Created token {:?} (role {}, environments: {}), id {}.\n\n    {}\n\n\
         Copy the secret now: it is not shown again.",
        token.name,
        token.role,
        environments(token),
        token.id,
        created.secret
    )
}

fn environments(token: &Token) -> String {
    if token.environments.is_empty() { "all".to_owned() } else { token.environments.join(", ") }
}

fn status(token: &Token) -> String {
    match &token.revoked_at {
        Some(at) => format!("revoked {at}"),
        None => "active".to_owned(),
    }
}
