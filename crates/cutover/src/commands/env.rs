//! `cutover env`: environments and their deployment targets.

use clap::Subcommand;
use cutover_api::{CreateEnvironment, Environment, Target, UpdateEnvironment};
use serde_json::Map;

use super::Context;
use crate::failure::usage;
use crate::output::{self, OutputFormat, or_dash, yes_no};

#[derive(Debug, Subcommand)]
pub enum EnvCommand {
    /// Lists every environment.
    List,
    /// Shows one environment.
    Show { name: String },
    /// Creates an environment (owners only).
    Create {
        /// Lowercase letters, digits, `_` and `-`, e.g. `production`, `dev-eu`.
        name: String,
        #[arg(long)]
        description: Option<String>,
        /// Only owners, or tokens limited to this environment, may change what is live here.
        #[arg(long)]
        protected: bool,
        /// A deployment target (region, cluster, shard); repeat for several.
        #[arg(long = "target", value_name = "NAME")]
        targets: Vec<String>,
    },
    /// Changes an environment; options left out are unchanged.
    Update {
        name: String,
        #[arg(long)]
        description: Option<String>,
        #[arg(long, value_name = "true|false")]
        protected: Option<bool>,
        /// Replaces the deployment targets; repeat for several. Targets kept by name keep their
        /// configuration.
        #[arg(long = "target", value_name = "NAME", conflicts_with = "clear_targets")]
        targets: Vec<String>,
        /// Removes every deployment target.
        #[arg(long)]
        clear_targets: bool,
    },
    /// Deletes an environment (refused while anything depends on it).
    Delete { name: String },
}

pub async fn run(context: &Context, command: EnvCommand) -> anyhow::Result<()> {
    let client = &context.client;
    match command {
        EnvCommand::List => {
            let page = client.list_environments().await?;
            if context.output == OutputFormat::Json {
                return output::json(&page);
            }
            if page.items.is_empty() {
                return output::emit("no environments");
            }
            let rows = page.items.iter().map(|env| {
                [
                    env.name.clone(),
                    yes_no(env.protected),
                    output::list_or_dash(&target_names(env)),
                    or_dash(&env.description),
                ]
            });
            output::emit(&output::table(["NAME", "PROTECTED", "TARGETS", "DESCRIPTION"], rows))
        }
        EnvCommand::Show { name } => show(context, &client.get_environment(&name).await?),
        EnvCommand::Create { name, description, protected, targets } => {
            let body = CreateEnvironment {
                name,
                description,
                protected: Some(protected),
                targets: (!targets.is_empty()).then(|| targets.into_iter().map(plain).collect()),
            };
            show(context, &client.create_environment(&body).await?)
        }
        EnvCommand::Update { name, description, protected, targets, clear_targets } => {
            let targets = if clear_targets {
                Some(Vec::new())
            } else if targets.is_empty() {
                None
            } else {
                let current = client.get_environment(&name).await?;
                Some(keep_config(&current, targets))
            };
            let body = UpdateEnvironment { description, protected, targets };
            if body.description.is_none() && body.protected.is_none() && body.targets.is_none() {
                return Err(usage("nothing to update: give --description, --protected, --target or --clear-targets"));
            }
            show(context, &client.update_environment(&name, &body).await?)
        }
        EnvCommand::Delete { name } => {
            client.delete_environment(&name).await?;
            match context.output {
                OutputFormat::Json => Ok(()),
                OutputFormat::Table => output::emit(&format!("deleted environment {name}")),
            }
        }
    }
}

fn show(context: &Context, env: &Environment) -> anyhow::Result<()> {
    if context.output == OutputFormat::Json {
        return output::json(env);
    }
    let targets = env
        .targets
        .iter()
        .map(|target| {
            if target.config.is_empty() {
                target.name.clone()
            } else {
                let config = serde_json::Value::from(target.config.clone());
                format!("{} {config}", target.name)
            }
        })
        .collect::<Vec<_>>();
    output::emit(&output::fields(&[
        ("name", env.name.clone()),
        ("description", or_dash(&env.description)),
        ("protected", yes_no(env.protected)),
        ("targets", if targets.is_empty() { "-".into() } else { targets.join("\n") }),
        ("created", env.created_at.clone()),
        ("updated", env.updated_at.clone()),
    ]))
}

fn target_names(env: &Environment) -> Vec<String> {
    env.targets.iter().map(|target| target.name.clone()).collect()
}

fn plain(name: String) -> Target {
    Target { name, config: Map::new() }
}

/// The targets named, in that order; those the environment already has keep their configuration,
/// which the command line cannot express.
fn keep_config(current: &Environment, names: Vec<String>) -> Vec<Target> {
    names
        .into_iter()
        .map(|name| current.targets.iter().find(|target| target.name == name).cloned().unwrap_or_else(|| plain(name)))
        .collect()
}

#[cfg(test)]
mod tests {
    use cutover_api::{Environment, Target};
    use serde_json::json;

    use super::keep_config;

    #[test]
    fn targets_kept_by_name_keep_their_configuration() {
        let config = json!({"region": "eu-west-1"}).as_object().cloned().unwrap();
        let current = Environment {
            name: "production".into(),
            description: String::new(),
            protected: false,
            targets: vec![Target { name: "eu".into(), config: config.clone() }],
            created_at: String::new(),
            updated_at: String::new(),
        };
        let targets = keep_config(&current, vec!["us".into(), "eu".into()]);
        assert_eq!(targets[0].name, "us");
        assert!(targets[0].config.is_empty());
        assert_eq!(targets[1].config, config);
    }
}
