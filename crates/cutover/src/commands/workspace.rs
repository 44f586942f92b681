//! `cutover workspace`: tenants.

use clap::Subcommand;
use cutover_api::CreateWorkspace;

use super::Context;
use super::token::secret_notice;
use crate::output::{self, OutputFormat, yes_no};

#[derive(Debug, Subcommand)]
pub enum WorkspaceCommand {
    /// Lists workspaces.
    List,
    /// Creates a workspace and its first owner token, whose secret is printed once.
    Create {
        name: String,
        /// Name of the first owner token [default: owner]
        #[arg(long, value_name = "N")]
        token_name: Option<String>,
    },
}

pub async fn run(context: &Context, command: WorkspaceCommand) -> anyhow::Result<()> {
    let client = &context.client;
    match command {
        WorkspaceCommand::List => {
            let page = client.list_workspaces().await?;
            if context.output == OutputFormat::Json {
                return output::json(&page);
            }
            let rows = page.items.iter().map(|workspace| {
                [
                    workspace.id.clone(),
                    workspace.name.clone(),
                    yes_no(workspace.admin),
                    workspace.revision.to_string(),
                    workspace.created_at.clone(),
                ]
            });
            output::emit(&output::table(["ID", "NAME", "ADMIN", "REVISION", "CREATED"], rows))
        }
        WorkspaceCommand::Create { name, token_name } => {
            let created = client.create_workspace(&CreateWorkspace { name, token_name }).await?;
            if context.output == OutputFormat::Json {
                return output::json(&created);
            }
            let workspace = &created.workspace;
            output::emit(&format!(
                "Created workspace {:?}, id {}.\n{}",
                workspace.name,
                workspace.id,
                secret_notice(&created.token)
            ))
        }
    }
}
