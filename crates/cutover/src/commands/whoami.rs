//! `cutover whoami`: the token in use and its workspace.

use super::Context;
use crate::output::{self, OutputFormat};

pub async fn run(context: &Context) -> anyhow::Result<()> {
    let whoami = context.client.whoami().await?;
    if context.output == OutputFormat::Json {
        return output::json(&whoami);
    }
    let (workspace, token) = (&whoami.workspace, &whoami.token);
    let environments = if token.environments.is_empty() { "all".to_owned() } else { token.environments.join(", ") };
    output::emit(&output::fields(&[
        ("server", context.client.server_url().to_owned()),
        ("workspace", format!("{} ({})", workspace.name, workspace.id)),
        ("token", format!("{} ({})", token.name, token.id)),
        ("role", token.role.clone()),
        ("environments", environments),
    ]))
}
