//! `cutover import DIR`.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use anyhow::Context as _;
use cutover_api::{Artifact, CreateArtifact, CreateVersion, SetPin, UpdateArtifact};
use cutover_client::{ClientError, PageQuery};
use serde::Serialize;
use serde_json::Value;

use super::{
    Entry, FILE_SHA, ImportArgs, MANIFEST, check_file, file_name, load_manifest, path_in, read_content, value_type,
};
use crate::commands::Context;
use crate::failure::usage;
use crate::output::{self, OutputFormat};

/// One step of an import, as the plan prints it.
#[derive(Debug, Serialize)]
struct Step {
    /// `create`, `update`, `unarchive`, `publish`, `pin`, `archive` or `unchanged`.
    action: &'static str,
    artifact: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    environment: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sha256: Option<String>,
    /// The version published or pinned; absent in a dry run for a version not yet published.
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<i64>,
    #[serde(skip)]
    work: Work,
}

#[derive(Debug, Default)]
enum Work {
    #[default]
    None,
    Create(CreateArtifact),
    Update(UpdateArtifact),
    Publish(Value),
}

impl Step {
    fn new(action: &'static str, artifact: &str) -> Self {
        Self {
            action,
            artifact: artifact.to_owned(),
            environment: None,
            file: None,
            sha256: None,
            version: None,
            work: Work::None,
        }
    }

    fn detail(&self) -> String {
        let version = self.version.map_or_else(|| "new version".to_owned(), |v| format!("version {v}"));
        match self.action {
            "publish" => format!(
                "{} from {} (sha256 {})",
                version,
                self.file.as_deref().unwrap_or("-"),
                self.sha256.as_deref().map_or("-", |s| s.get(..FILE_SHA).unwrap_or(s))
            ),
            "pin" => format!("{version} live in {}", self.environment.as_deref().unwrap_or("-")),
            _ => String::new(),
        }
    }
}

#[derive(Serialize)]
struct ImportReport<'a> {
    dry_run: bool,
    steps: &'a [Step],
}

pub async fn import(context: &Context, args: ImportArgs) -> anyhow::Result<()> {
    let dir = args.dir.as_path();
    let manifest = load_manifest(dir)?;
    // The whole manifest is checked before anything is asked or written.
    let mut keys = BTreeSet::new();
    for entry in &manifest.artifacts {
        if !keys.insert(entry.key.as_str()) {
            return Err(usage(format!("{MANIFEST} lists artifact {:?} twice", entry.key)));
        }
        let value_type = value_type(entry)?;
        file_name(&entry.key, value_type, None)?;
        if let Some(file) = &entry.latest {
            check_file(entry, value_type, file, None)?;
        }
        for file in &entry.pinned {
            check_file(entry, value_type, file, Some(&file.sha256))?;
        }
    }
    let environments: BTreeSet<String> = if args.pin {
        context.client.list_environments().await?.items.into_iter().map(|e| e.name).collect()
    } else {
        BTreeSet::new()
    };
    let mut steps = Vec::new();
    for entry in &manifest.artifacts {
        plan_artifact(context, dir, entry, args.pin, &environments, &mut steps).await?;
    }
    if !args.dry_run {
        execute(context, dir, &mut steps).await?;
    }
    match context.output {
        OutputFormat::Json => output::json(&ImportReport { dry_run: args.dry_run, steps: &steps }),
        OutputFormat::Table => {
            let changes = steps.iter().filter(|s| s.action != "unchanged").count();
            let rows = steps.iter().map(|s| [s.action.to_owned(), s.artifact.clone(), s.detail()]);
            output::emit(&output::table(["ACTION", "ARTIFACT", "DETAIL"], rows))?;
            output::note(&match (args.dry_run, changes) {
                (true, 0) | (false, 0) => "nothing to change: the workspace already matches the folder".to_owned(),
                (true, n) => format!("dry run: {n} change(s) planned, nothing written"),
                (false, n) => format!("{n} change(s) made"),
            });
            Ok(())
        }
    }
}

/// What the workspace holds of one artifact: the artifact, its latest version, its pins
/// (environment → version), and the versions found by content so far (sha256 → number).
struct Current {
    artifact: Option<Artifact>,
    latest_sha: Option<String>,
    pins: HashMap<String, i64>,
    by_sha: HashMap<String, i64>,
}

async fn current(context: &Context, key: &str) -> anyhow::Result<Current> {
    let client = &context.client;
    let artifact = match client.get_artifact(key).await {
        Ok(artifact) => artifact,
        Err(e) if e.status() == Some(404) => {
            return Ok(Current { artifact: None, latest_sha: None, pins: HashMap::new(), by_sha: HashMap::new() });
        }
        Err(e) => return Err(e.into()),
    };
    let mut by_sha = HashMap::new();
    let mut latest_sha = None;
    if artifact.latest_version > 0 {
        let latest = client.get_version(key, artifact.latest_version).await?;
        by_sha.insert(latest.sha256.clone(), latest.number);
        latest_sha = Some(latest.sha256);
    }
    let pins = client.list_pins(key).await?.items.into_iter().map(|p| (p.environment, p.version)).collect();
    Ok(Current { artifact: Some(artifact), latest_sha, pins, by_sha })
}

/// The number of the newest version of `key` with content `sha256`, reading versions newest
/// first (only when a pin needs content that is not the latest).
async fn find_version(
    context: &Context,
    key: &str,
    sha256: &str,
    found: &mut HashMap<String, i64>,
) -> anyhow::Result<Option<i64>> {
    if let Some(number) = found.get(sha256) {
        return Ok(Some(*number));
    }
    let mut query = PageQuery { limit: Some(200), cursor: None };
    loop {
        let page = context.client.list_versions(key, &query).await?;
        for version in page.items {
            found.entry(version.sha256).or_insert(version.number);
        }
        if let Some(number) = found.get(sha256) {
            return Ok(Some(*number));
        }
        match page.next_cursor {
            Some(cursor) => query.cursor = Some(cursor),
            None => return Ok(None),
        }
    }
}

async fn plan_artifact(
    context: &Context,
    dir: &Path,
    entry: &Entry,
    pin: bool,
    environments: &BTreeSet<String>,
    steps: &mut Vec<Step>,
) -> anyhow::Result<()> {
    let key = entry.key.as_str();
    let value_type = value_type(entry)?;
    let first = steps.len();
    let mut current = current(context, key).await?;
    match &current.artifact {
        None => {
            let mut step = Step::new("create", key);
            step.work = Work::Create(CreateArtifact {
                key: key.to_owned(),
                value_type: entry.value_type.clone(),
                kind: Some(entry.kind.clone()),
                description: (!entry.description.is_empty()).then(|| entry.description.clone()),
            });
            steps.push(step);
        }
        Some(artifact) => {
            if artifact.value_type != entry.value_type {
                return Err(usage(format!(
                    "artifact {key:?} is a {} artifact here and a {} one in the folder: a value type never changes",
                    artifact.value_type, entry.value_type
                )));
            }
            if artifact.kind != entry.kind || artifact.description != entry.description {
                let mut step = Step::new("update", key);
                step.work = Work::Update(UpdateArtifact {
                    kind: (artifact.kind != entry.kind).then(|| entry.kind.clone()),
                    description: (artifact.description != entry.description).then(|| entry.description.clone()),
                });
                steps.push(step);
            }
        }
    }
    let archived_here = current.artifact.as_ref().is_some_and(|a| a.archived_at.is_some());

    // Contents, in publishing order: pinned versions the workspace lacks, then the latest.
    let mut writes = Vec::new();
    if pin {
        let missing: Vec<&String> = entry.pins.keys().filter(|e| !environments.contains(*e)).collect();
        if !missing.is_empty() {
            return Err(usage(format!(
                "artifact {key:?} is pinned in environment(s) this workspace does not have: {}; create them or import without --pin",
                missing.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
            )));
        }
        let pin_shas: BTreeSet<&str> = entry.pins.values().map(String::as_str).collect();
        for file in &entry.pinned {
            if !pin_shas.contains(file.sha256.as_str()) {
                continue;
            }
            check_file(entry, value_type, file, Some(&file.sha256))?;
            let content = read_content(dir, &file.file, value_type)?;
            if content.sha256() != file.sha256 {
                return Err(usage(format!(
                    "{} does not hold the content {MANIFEST} lists (sha256 {}): it is the copy of a version live somewhere; edit {} instead",
                    file.file,
                    file.sha256,
                    file_name(key, value_type, None)?
                )));
            }
            let exists = match current.artifact {
                Some(_) => find_version(context, key, &file.sha256, &mut current.by_sha).await?.is_some(),
                None => false,
            };
            if !exists {
                writes.push((file.file.clone(), content));
            }
        }
    }
    if let Some(latest) = &entry.latest {
        check_file(entry, value_type, latest, None)?;
        let content = read_content(dir, &latest.file, value_type)?;
        // Publish when the latest differs, or when publishing pinned contents would leave one of
        // them latest instead of the folder's.
        if current.latest_sha.as_deref() != Some(content.sha256().as_str()) || !writes.is_empty() {
            writes.push((latest.file.clone(), content));
        }
    }
    for (file, content) in writes {
        let mut step = Step::new("publish", key);
        step.file = Some(file);
        step.sha256 = Some(content.sha256());
        step.work = Work::Publish(content.value().clone());
        steps.push(step);
    }

    // Pins, by content.
    for (environment, sha) in &entry.pins {
        if !pin {
            break;
        }
        let published = steps[first..].iter().any(|s| s.action == "publish" && s.sha256.as_deref() == Some(sha));
        let number = match &current.artifact {
            Some(_) if !published => find_version(context, key, sha, &mut current.by_sha).await?,
            _ => None,
        };
        if number.is_none() && !published {
            return Err(usage(format!(
                "artifact {key:?}: the content live in {environment} (sha256 {sha}) is neither in the folder nor a version here"
            )));
        }
        if number.is_some() && current.pins.get(environment) == number.as_ref() {
            continue;
        }
        let mut step = Step::new("pin", key);
        step.environment = Some(environment.clone());
        step.sha256 = Some(sha.clone());
        step.version = number;
        steps.push(step);
    }

    let writes_content = steps.len() > first && steps[first..].iter().any(|s| matches!(s.action, "publish" | "pin"));
    if archived_here && (writes_content || !entry.archived) {
        // After the artifact's own fields, before its versions and pins: an archived artifact
        // takes none.
        let at = first + steps[first..].iter().take_while(|s| s.action == "update").count();
        steps.insert(at, Step::new("unarchive", key));
    }
    if entry.archived && (!archived_here || writes_content) {
        steps.push(Step::new("archive", key));
    }
    if steps.len() == first {
        steps.push(Step::new("unchanged", key));
    }
    Ok(())
}

async fn execute(context: &Context, dir: &Path, steps: &mut [Step]) -> anyhow::Result<()> {
    let client = &context.client;
    // sha256 → version number, per artifact, as publishes happen.
    let mut published: HashMap<(String, String), i64> = HashMap::new();
    for step in steps.iter_mut() {
        let key = step.artifact.clone();
        match (step.action, &step.work) {
            ("create", Work::Create(body)) => {
                client.create_artifact(body).await?;
            }
            ("update", Work::Update(body)) => {
                client.update_artifact(&key, body).await?;
            }
            ("unarchive", _) => {
                client.unarchive_artifact(&key).await?;
            }
            ("archive", _) => {
                client.archive_artifact(&key).await?;
            }
            ("publish", Work::Publish(content)) => {
                let message = format!("imported from {}", path_in(dir, step.file.as_deref().unwrap_or("")).display());
                let body = CreateVersion {
                    content: content.clone(),
                    message: Some(message),
                    environments: None,
                    move_pins: false,
                };
                let version = client.create_version(&key, &body).await.map_err(|e| failed(e, &key))?;
                published.insert((key.clone(), version.sha256.clone()), version.number);
                step.version = Some(version.number);
            }
            ("pin", _) => {
                let sha = step.sha256.clone().unwrap_or_default();
                let version = match step.version {
                    Some(v) => v,
                    None => *published
                        .get(&(key.clone(), sha.clone()))
                        .with_context(|| format!("no version of {key} with sha256 {sha} was published"))?,
                };
                let environment = step.environment.clone().unwrap_or_default();
                let body = SetPin { version, reason: Some("cutover import".to_owned()) };
                client.set_pin(&key, &environment, &body, None).await.map_err(|e| failed(e, &key))?;
                step.version = Some(version);
            }
            _ => {}
        }
    }
    Ok(())
}

fn failed(err: ClientError, key: &str) -> anyhow::Error {
    anyhow::Error::new(err).context(format!(
        "import stopped at artifact {key}; the steps before it were made, and running the import again does what is left"
    ))
}
