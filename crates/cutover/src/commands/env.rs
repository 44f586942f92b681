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
        /// A deployment target (region, cluster, shard), optionally with its configuration as a
        /// JSON object: `--target eu='{"region": "eu-west-1"}'`. Repeat for several.
        #[arg(long = "target", value_name = "NAME[=JSON]", value_parser = parse_target)]
        targets: Vec<TargetArg>,
        /// Where to list it (1 to 1000000) [default: after every environment there is].
        #[arg(long, value_name = "N")]
        position: Option<i64>,
    },
    /// Changes an environment; options left out are unchanged.
    Update {
        name: String,
        #[arg(long)]
        description: Option<String>,
        #[arg(long, value_name = "true|false")]
        protected: Option<bool>,
        /// Replaces the deployment targets; repeat for several. `NAME=JSON` sets a target's
        /// configuration (a JSON object); a bare `NAME` the environment already has keeps its own.
        #[arg(long = "target", value_name = "NAME[=JSON]", value_parser = parse_target, conflicts_with = "clear_targets")]
        targets: Vec<TargetArg>,
        /// Removes every deployment target.
        #[arg(long)]
        clear_targets: bool,
        /// Where to list it (1 to 1000000; lists go from low to high, ties by name).
        #[arg(long, value_name = "N")]
        position: Option<i64>,
    },
    /// Sets the order environments are listed in: those named first, in the order given, then
    /// the rest in their current order. E.g. `cutover env order dev staging production`.
    Order {
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
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
        EnvCommand::Create { name, description, protected, targets, position } => {
            let body = CreateEnvironment {
                name,
                description,
                protected: Some(protected),
                targets: (!targets.is_empty()).then(|| targets.into_iter().map(TargetArg::into_target).collect()),
                position,
            };
            show(context, &client.create_environment(&body).await?)
        }
        EnvCommand::Update { name, description, protected, targets, clear_targets, position } => {
            let targets = if clear_targets {
                Some(Vec::new())
            } else if targets.is_empty() {
                None
            } else {
                let current = client.get_environment(&name).await?;
                Some(keep_config(&current, targets))
            };
            let body = UpdateEnvironment { description, protected, targets, position };
            if body.description.is_none()
                && body.protected.is_none()
                && body.targets.is_none()
                && body.position.is_none()
            {
                return Err(usage(
                    "nothing to update: give --description, --protected, --target, --clear-targets or --position",
                ));
            }
            show(context, &client.update_environment(&name, &body).await?)
        }
        EnvCommand::Order { names } => order(context, names).await,
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

/// `--target NAME[=JSON]`: a target's name, and its configuration when one is given.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetArg {
    name: String,
    config: Option<Map<String, serde_json::Value>>,
}

impl TargetArg {
    fn into_target(self) -> Target {
        Target { name: self.name, config: self.config.unwrap_or_default() }
    }
}

fn parse_target(raw: &str) -> Result<TargetArg, String> {
    let Some((name, json)) = raw.split_once('=') else {
        return Ok(TargetArg { name: raw.to_owned(), config: None });
    };
    let example = "e.g. --target eu='{\"region\": \"eu-west-1\"}'";
    match serde_json::from_str(json) {
        Ok(serde_json::Value::Object(config)) => Ok(TargetArg { name: name.to_owned(), config: Some(config) }),
        Ok(_) => Err(format!("the configuration after `=` must be a JSON object, {example}")),
        Err(e) => Err(format!("the configuration after `=` is not JSON ({e}); {example}")),
    }
}

/// The targets given, in that order: a configuration given replaces the target's; a bare name
/// the environment already has keeps its configuration.
fn keep_config(current: &Environment, targets: Vec<TargetArg>) -> Vec<Target> {
    targets
        .into_iter()
        .map(|arg| match (&arg.config, current.targets.iter().find(|target| target.name == arg.name)) {
            (None, Some(existing)) => existing.clone(),
            _ => arg.into_target(),
        })
        .collect()
}

/// The positions that list `names` first, in that order, then every other environment in its
/// current order; only environments whose position changes are returned.
fn reorder(current: &[Environment], names: &[String]) -> Result<Vec<(String, i64)>, String> {
    let unknown: Vec<_> = names.iter().filter(|n| !current.iter().any(|e| &e.name == *n)).cloned().collect();
    if !unknown.is_empty() {
        return Err(format!("no such environment: {}", unknown.join(", ")));
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(twice) = names.iter().find(|n| !seen.insert(n.as_str())) {
        return Err(format!("{twice} is named twice"));
    }
    let rest = current.iter().map(|e| &e.name).filter(|n| !names.contains(n));
    Ok(names
        .iter()
        .chain(rest)
        .zip(1_i64..)
        .filter(|(name, position)| current.iter().any(|e| &e.name == *name && e.position != *position))
        .map(|(name, position)| (name.clone(), position))
        .collect())
}

async fn order(context: &Context, names: Vec<String>) -> anyhow::Result<()> {
    let client = &context.client;
    let current = client.list_environments().await?.items;
    let moves = reorder(&current, &names).map_err(usage)?;
    for (name, position) in &moves {
        let body = UpdateEnvironment { position: Some(*position), ..UpdateEnvironment::default() };
        client.update_environment(name, &body).await?;
    }
    let listed = client.list_environments().await?;
    if context.output == OutputFormat::Json {
        return output::json(&listed);
    }
    let order: Vec<_> = listed.items.iter().map(|e| e.name.as_str()).collect();
    output::emit(&format!("environments are listed in this order: {}", order.join(", ")))
}

#[cfg(test)]
mod tests {
    use cutover_api::{Environment, Target};
    use serde_json::json;

    use super::{TargetArg, keep_config, parse_target, reorder};

    fn environment(name: &str, position: i64, targets: Vec<Target>) -> Environment {
        Environment {
            name: name.into(),
            description: String::new(),
            protected: false,
            targets,
            position,
            created_at: String::new(),
            updated_at: String::new(),
        }
    }

    #[test]
    fn a_target_takes_an_optional_json_object_after_the_first_equals_sign() {
        assert_eq!(parse_target("eu").unwrap(), TargetArg { name: "eu".into(), config: None });
        let parsed = parse_target(r#"eu={"region": "eu-west-1", "url": "https://x/?a=b"}"#).unwrap();
        assert_eq!(parsed.name, "eu");
        assert_eq!(parsed.config.unwrap()["url"], "https://x/?a=b");
        assert!(parse_target("eu=[1]").unwrap_err().contains("must be a JSON object"));
        assert!(parse_target("eu={region").unwrap_err().contains("is not JSON"));
    }

    #[test]
    fn targets_named_bare_keep_their_configuration_and_given_ones_replace_it() {
        let config = json!({"region": "eu-west-1"}).as_object().cloned().unwrap();
        let current = environment("production", 1, vec![Target { name: "eu".into(), config: config.clone() }]);
        let targets = keep_config(&current, vec![parse_target("us").unwrap(), parse_target("eu").unwrap()]);
        assert_eq!(targets[0].name, "us");
        assert!(targets[0].config.is_empty());
        assert_eq!(targets[1].config, config);
        let replaced = keep_config(&current, vec![parse_target(r#"eu={"region": "eu-central-1"}"#).unwrap()]);
        assert_eq!(replaced[0].config["region"], "eu-central-1");
    }

    #[test]
    fn ordering_moves_the_named_first_and_keeps_the_rest_in_their_order() {
        let current = ["production", "qa", "staging", "dev"]
            .iter()
            .zip(1..)
            .map(|(name, position)| environment(name, position, Vec::new()))
            .collect::<Vec<_>>();
        let names = |all: &[&str]| all.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            reorder(&current, &names(&["dev", "staging", "production"])).unwrap(),
            [("dev".to_owned(), 1), ("staging".to_owned(), 2), ("production".to_owned(), 3), ("qa".to_owned(), 4)]
        );
        assert_eq!(reorder(&current, &names(&["production"])).unwrap(), [], "already first: nothing moves");
        assert_eq!(reorder(&current, &names(&["nope", "dev"])).unwrap_err(), "no such environment: nope");
        assert_eq!(reorder(&current, &names(&["dev", "dev"])).unwrap_err(), "dev is named twice");
    }
}
