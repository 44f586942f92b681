//! `cutover pool`: warm pools of ready instances of the version pinned to an environment, built
//! by a provisioner the server's operator declared; `claim` hands one out at once.

use clap::{Args, Subcommand};
use cutover_api::{CreatePool, DesiredCount, Pool, PoolInstance, PoolSchedule};

use super::Context;
use crate::output::{self, OutputFormat};

#[derive(Debug, Subcommand)]
pub enum PoolCommand {
    /// Creates a pool: keep N ready instances of ARTIFACT's version pinned to ENV.
    #[command(
        after_help = "Example:\n  cutover pool create ci-runners --artifact templates/runner --env production \\\n      \
                            --executor provision --instances 2 --schedule '* 8-18 * * 1-5=10' --timezone Europe/Paris \\\n      \
                            --parameters '{\"size\": \"large\"}' --agent main"
    )]
    Create(CreateArgs),
    /// Lists the pools.
    List,
    /// Shows a pool with its counts: desired, running, ready, starting, expired, failures.
    Show { name: String },
    /// Takes one ready instance of the pool, now yours (exit code 1 with `pool_empty` when none
    /// is ready).
    Claim { name: String },
    /// Pauses a pool: the reconciler creates and deletes nothing until resumed.
    Pause { name: String },
    /// Resumes a pool, forgetting earlier failed starts.
    Resume { name: String },
    /// Lists the instances a pool owns: starting, running, failed, being deleted.
    Instances { name: String },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The pool's name (`^[a-z0-9][a-z0-9_-]{0,62}$`).
    name: String,
    /// Artifact key: instances are built with its version pinned to --env.
    #[arg(long, value_name = "KEY")]
    artifact: String,
    #[arg(long, value_name = "ENV")]
    env: String,
    /// The provisioner: an executor the server's operator declared under `[executors.NAME]`.
    /// It gets CUTOVER_TRANSITION (start or delete), CUTOVER_INSTANCE_ID, CUTOVER_VERSION,
    /// CUTOVER_PARAMETERS, CUTOVER_IDEMPOTENCY_KEY, CUTOVER_AGENT_URL and CUTOVER_AGENT_TOKEN.
    #[arg(long, value_name = "NAME")]
    executor: String,
    /// Ready instances to keep when no schedule matches (0 to 100).
    #[arg(long, value_name = "N", default_value_t = 1)]
    instances: u32,
    /// CRON=N: keep N while CRON (minute `*`) matches; repeat, first match wins.
    #[arg(long = "schedule", value_name = "CRON=N")]
    schedules: Vec<String>,
    /// IANA time zone of the schedules [default: UTC]
    #[arg(long, value_name = "ZONE")]
    timezone: Option<String>,
    /// A JSON object handed to the provisioner.
    #[arg(long, value_name = "JSON")]
    parameters: Option<String>,
    /// An agent each instance reports for; repeat for several.
    #[arg(long = "agent", value_name = "NAME")]
    agents: Vec<String>,
    /// Seconds a build may take [default: the executor's]
    #[arg(long, value_name = "SECONDS")]
    timeout: Option<u32>,
    /// Replace instances older than this many seconds.
    #[arg(long, value_name = "SECONDS")]
    ttl: Option<u32>,
}

fn schedule(text: &str) -> anyhow::Result<PoolSchedule> {
    let (cron, instances) = text
        .rsplit_once('=')
        .ok_or_else(|| anyhow::anyhow!("--schedule {text:?}: write CRON=N, e.g. '* 8-18 * * 1-5=10'"))?;
    let instances = instances.trim().parse().map_err(|_| anyhow::anyhow!("--schedule {text:?}: N must be a number"))?;
    Ok(PoolSchedule { cron: cron.trim().to_owned(), instances })
}

fn counts(pool: &Pool) -> String {
    pool.counts.as_ref().map_or_else(
        || "-".to_owned(),
        |c| format!("{} desired, {} running, {} ready, {} starting", c.desired, c.running, c.ready, c.starting),
    )
}

fn show(context: &Context, pool: &Pool) -> anyhow::Result<()> {
    if context.output == OutputFormat::Json {
        return output::json(pool);
    }
    let mut rows = vec![
        ("name", pool.name.clone()),
        ("artifact", pool.artifact.clone()),
        ("environment", pool.environment.clone()),
        ("version", pool.version.map_or_else(|| "- (nothing pinned)".to_owned(), |v| format!("v{v}"))),
        ("executor", pool.executor.clone()),
        ("instances", counts(pool)),
        ("paused", output::yes_no(pool.paused)),
    ];
    if let Some(c) = &pool.counts {
        rows.push(("expired", c.expired.to_string()));
        rows.push(("failures", c.failures.to_string()));
        rows.push(("prewarming", c.prewarming.to_string()));
    }
    if let Some(blocked) = &pool.blocked {
        let until = blocked.until.as_deref().map(|u| format!(" until {u}")).unwrap_or_default();
        rows.push(("blocked", format!("{}{until}", blocked.reason)));
    }
    output::emit(&output::fields(&rows))
}

fn instance_rows(instances: &[PoolInstance]) -> String {
    let rows = instances.iter().map(|i| {
        [
            i.id.clone(),
            i.version.map_or_else(|| "-".to_owned(), |v| format!("v{v}")),
            format!("{} {}", i.transition, i.status),
            output::yes_no(i.ready),
            format!("{}/{}", i.agents_ready, i.agents),
            i.created_at.clone(),
        ]
    });
    output::table(["ID", "VERSION", "LATEST BUILD", "READY", "AGENTS", "CREATED"], rows)
}

pub async fn run(context: &Context, command: PoolCommand) -> anyhow::Result<()> {
    let client = &context.client;
    match command {
        PoolCommand::Create(args) => {
            let parameters = args
                .parameters
                .as_deref()
                .map(|text| serde_json::from_str(text).map_err(|e| anyhow::anyhow!("--parameters is not JSON: {e}")))
                .transpose()?;
            let body = CreatePool {
                name: args.name,
                artifact: args.artifact,
                environment: args.env,
                parameters,
                agents: Some(args.agents),
                executor: args.executor,
                timeout_seconds: args.timeout,
                desired: DesiredCount {
                    instances: args.instances,
                    timezone: args.timezone,
                    schedules: args.schedules.iter().map(|s| schedule(s)).collect::<anyhow::Result<_>>()?,
                },
                ttl_seconds: args.ttl,
                ..CreatePool::default()
            };
            show(context, &client.create_pool(&body).await?)
        }
        PoolCommand::List => {
            let pools = client.list_pools().await?;
            if context.output == OutputFormat::Json {
                return output::json(&pools);
            }
            if pools.is_empty() {
                return output::emit("no pools");
            }
            let rows = pools.iter().map(|p| {
                [
                    p.name.clone(),
                    p.artifact.clone(),
                    p.environment.clone(),
                    p.desired.instances.to_string(),
                    p.executor.clone(),
                    output::yes_no(p.paused),
                ]
            });
            output::emit(&output::table(["NAME", "ARTIFACT", "ENVIRONMENT", "INSTANCES", "EXECUTOR", "PAUSED"], rows))
        }
        PoolCommand::Show { name } => show(context, &client.get_pool(&name).await?),
        PoolCommand::Pause { name } => show(context, &client.pause_pool(&name).await?),
        PoolCommand::Resume { name } => show(context, &client.resume_pool(&name).await?),
        PoolCommand::Claim { name } => {
            let instance = client.claim_instance(&name).await?;
            if context.output == OutputFormat::Json {
                return output::json(&instance);
            }
            output::emit(&instance_rows(std::slice::from_ref(&instance)))
        }
        PoolCommand::Instances { name } => {
            let instances = client.pool_instances(&name).await?;
            if context.output == OutputFormat::Json {
                return output::json(&instances);
            }
            if instances.is_empty() {
                return output::emit(&format!("pool {name} has no instances"));
            }
            output::emit(&instance_rows(&instances))
        }
    }
}
