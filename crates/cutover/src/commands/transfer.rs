//! `cutover export DIR` and `cutover import DIR`: a workspace's artifacts as a folder of files, so
//! that a prompt or config library kept in git can be dumped and loaded.
//!
//! The folder holds one file per artifact, `<key>.txt` for `string` artifacts and `<key>.json`
//! (pretty-printed) for the others, with the content of the **latest** version: what the next
//! version is edited from. A version live in some environment that is not the latest is kept
//! beside it as `<key>@<first 12 hex of its sha256>.<ext>`, so pins survive the trip. The manifest
//! `_cutover.json` lists each artifact's kind, value type, description, whether it is archived,
//! its files with their sha256, and its pins as environment → sha256: version numbers differ
//! between workspaces, content does not, so import finds a pin's version by its content. The
//! manifest's name starts with `_`, which no artifact key can, so no artifact's file can take its
//! place.
//!
//! Import is plain API calls, in order, each idempotent: running it again after a failure (or on
//! an up-to-date workspace) does only what is left. It never unpins, deletes or moves anything
//! the folder does not name.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Args;
use cutover_api::{Artifact, CreateArtifact, CreateVersion, SetPin, UpdateArtifact, Version};
use cutover_client::{ClientError, PageQuery};
use cutover_domain::{ArtifactKey, Content, ValueType};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Context;
use crate::failure::usage;
use crate::output::{self, OutputFormat};

/// The manifest's file name: no artifact key starts with `_`.
pub const MANIFEST: &str = "_cutover.json";
/// The manifest format this binary writes and reads.
const FORMAT: u32 = 1;
/// How many hex characters of a sha256 name a pinned version's file.
const FILE_SHA: usize = 12;

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Directory to write: new, empty, or a previous export (whose files are replaced).
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Directory written by `cutover export` (or kept in git since).
    pub dir: PathBuf,
    /// Print what would change and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Also pin each environment the manifest names to the version with the content it lists
    /// (environments it does not name are left alone).
    #[arg(long)]
    pub pin: bool,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    format: u32,
    artifacts: Vec<Entry>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    key: String,
    value_type: String,
    kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    description: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    archived: bool,
    /// The latest version; absent before the first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    latest: Option<FileRef>,
    /// Versions live somewhere that are not the latest, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pinned: Vec<FileRef>,
    /// Environment → sha256 of the content live there.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pins: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRef {
    file: String,
    sha256: String,
}

/// The file of an artifact's version, relative to the folder, `/`-separated: `<key>.<ext>` for
/// the latest, `<key>@<sha>.<ext>` for another. Refuses a key that could leave the folder.
fn file_name(key: &str, value_type: ValueType, sha256: Option<&str>) -> anyhow::Result<String> {
    ArtifactKey::parse(key).map_err(|e| usage(format!("artifact {e}")))?;
    if key.split('/').any(|part| part.is_empty() || part == "." || part == "..") {
        return Err(usage(format!(
            "artifact key {key:?} has an empty, `.` or `..` path segment: it cannot be a file in the folder"
        )));
    }
    let ext = if value_type == ValueType::String { "txt" } else { "json" };
    Ok(match sha256 {
        None => format!("{key}.{ext}"),
        Some(sha) => format!("{key}@{}.{ext}", sha.get(..FILE_SHA).unwrap_or(sha)),
    })
}

fn path_in(dir: &Path, file: &str) -> PathBuf {
    file.split('/').fold(dir.to_path_buf(), |path, part| path.join(part))
}

/// A version's content as its file holds it: the text itself, or pretty JSON.
fn file_text(content: &Value) -> anyhow::Result<String> {
    Ok(match content {
        Value::String(text) => text.clone(),
        other => serde_json::to_string_pretty(other)? + "\n",
    })
}

/// The content a file holds, checked against the value type.
fn read_content(dir: &Path, file: &str, value_type: ValueType) -> anyhow::Result<Content> {
    // A link in a cloned repository must not make import publish a file from elsewhere.
    refuse_links(dir, file)?;
    let path = path_in(dir, file);
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let value = if value_type == ValueType::String {
        Value::String(text)
    } else {
        serde_json::from_str(&text).map_err(|e| {
            usage(format!("{} is not valid JSON ({e}), which a {value_type} artifact needs", path.display()))
        })?
    };
    Content::parse(value_type, value).map_err(|e| usage(format!("{}: {e}", path.display())))
}

fn value_type(entry: &Entry) -> anyhow::Result<ValueType> {
    entry.value_type.parse::<ValueType>().map_err(|e| usage(format!("{MANIFEST}: artifact {:?}: {e}", entry.key)))
}

// ---------------------------------------------------------------------------------------------
// export

pub async fn export(context: &Context, args: ExportArgs) -> anyhow::Result<()> {
    let dir = args.dir.as_path();
    let previous = prepare(dir)?;
    let client = &context.client;
    let mut artifacts = super::artifact::all_artifacts(context, None, false).await?.items;
    artifacts.extend(super::artifact::all_artifacts(context, None, true).await?.items);
    artifacts.sort_by(|a, b| a.key.cmp(&b.key));

    let mut manifest = Manifest { format: FORMAT, artifacts: Vec::with_capacity(artifacts.len()) };
    let mut files: Vec<(String, String)> = Vec::new();
    for artifact in artifacts {
        let value_type = artifact.value_type.parse::<ValueType>().map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut versions: BTreeMap<i64, Version> = BTreeMap::new();
        if artifact.latest_version > 0 {
            versions.insert(artifact.latest_version, client.get_version(&artifact.key, artifact.latest_version).await?);
        }
        let pins = client.list_pins(&artifact.key).await?.items;
        for pin in &pins {
            if let std::collections::btree_map::Entry::Vacant(slot) = versions.entry(pin.version) {
                slot.insert(client.get_version(&artifact.key, pin.version).await?);
            }
        }
        let latest = versions.get(&artifact.latest_version);
        let mut entry = Entry {
            key: artifact.key.clone(),
            value_type: artifact.value_type.clone(),
            kind: artifact.kind.clone(),
            description: artifact.description.clone(),
            archived: artifact.archived_at.is_some(),
            latest: None,
            pinned: Vec::new(),
            pins: pins.iter().map(|p| (p.environment.clone(), versions[&p.version].sha256.clone())).collect(),
        };
        if let Some(latest) = latest {
            let file = file_name(&artifact.key, value_type, None)?;
            files.push((file.clone(), file_text(&latest.content)?));
            entry.latest = Some(FileRef { file, sha256: latest.sha256.clone() });
        }
        let mut seen: BTreeSet<&str> = latest.iter().map(|v| v.sha256.as_str()).collect();
        // Oldest first, each content once: the order import publishes them in.
        for version in versions.values() {
            if entry.pins.values().any(|sha| *sha == version.sha256) && seen.insert(&version.sha256) {
                let file = file_name(&artifact.key, value_type, Some(&version.sha256))?;
                files.push((file.clone(), file_text(&version.content)?));
                entry.pinned.push(FileRef { file, sha256: version.sha256.clone() });
            }
        }
        manifest.artifacts.push(entry);
    }
    check_layout(&files)?;
    // Before anything is removed or written.
    for file in previous.iter().chain(files.iter().map(|(f, _)| f)) {
        refuse_links(dir, file)?;
    }

    for file in &previous {
        remove_previous(dir, file)?;
    }
    for (file, text) in &files {
        let path = path_in(dir, file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    let manifest_text = serde_json::to_string_pretty(&manifest)? + "\n";
    let manifest_path = dir.join(MANIFEST);
    std::fs::write(&manifest_path, manifest_text).with_context(|| format!("writing {}", manifest_path.display()))?;

    match context.output {
        OutputFormat::Json => output::json(&manifest),
        OutputFormat::Table => output::emit(&format!(
            "exported {} artifact(s) as {} file(s) and {MANIFEST} to {}",
            manifest.artifacts.len(),
            files.len(),
            dir.display()
        )),
    }
}

/// Makes sure `dir` can be written: created if missing; if it exists, it must be empty or hold a
/// previous export, whose files are returned to be replaced.
fn prepare(dir: &Path) -> anyhow::Result<Vec<String>> {
    if !dir.exists() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        return Ok(Vec::new());
    }
    if !dir.is_dir() {
        return Err(usage(format!("{} is not a directory", dir.display())));
    }
    let manifest_path = dir.join(MANIFEST);
    if manifest_path.exists() {
        let previous = load_manifest(dir)?;
        let mut files = Vec::new();
        for entry in &previous.artifacts {
            let value_type = value_type(entry)?;
            let latest = entry.latest.iter().map(|f| (f, None));
            let pinned = entry.pinned.iter().map(|f| (f, Some(f.sha256.as_str())));
            for (file, sha) in latest.chain(pinned) {
                // Only files where this binary would have put them: a hand-edited manifest
                // cannot make export remove anything else.
                if file_name(&entry.key, value_type, sha)? == file.file {
                    files.push(file.file.clone());
                }
            }
        }
        return Ok(files);
    }
    let mut listing = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    if listing.next().is_some() {
        return Err(usage(format!(
            "{} is not empty and holds no {MANIFEST}: export writes into a new or empty directory, or over a previous export",
            dir.display()
        )));
    }
    Ok(Vec::new())
}

/// Removes a file of a previous export, and the directories it leaves empty.
fn remove_previous(dir: &Path, file: &str) -> anyhow::Result<()> {
    let path = path_in(dir, file);
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(anyhow::Error::new(e).context(format!("removing {}", path.display()))),
    }
    let mut parent = path.parent();
    while let Some(p) = parent.filter(|p| *p != dir) {
        if std::fs::remove_dir(p).is_err() {
            break;
        }
        parent = p.parent();
    }
    Ok(())
}

/// Refuses a symbolic link inside the folder on the way to a file (a directory or the file
/// itself): export writes, and import reads, inside the folder only.
fn refuse_links(dir: &Path, file: &str) -> anyhow::Result<()> {
    let mut path = dir.to_path_buf();
    for part in file.split('/') {
        path.push(part);
        if std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(usage(format!(
                "{} is a symbolic link: export and import touch files inside {} only",
                path.display(),
                dir.display()
            )));
        }
    }
    Ok(())
}

/// Refuses a set of files where one would be a directory of another (keys `a` and `a.txt/b`).
fn check_layout(files: &[(String, String)]) -> anyhow::Result<()> {
    let names: BTreeSet<&str> = files.iter().map(|(f, _)| f.as_str()).collect();
    for file in &names {
        let mut prefix = String::new();
        for part in file.split('/').collect::<Vec<_>>().split_last().map_or(&[][..], |(_, dirs)| dirs) {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            if names.contains(prefix.as_str()) {
                return Err(usage(format!("cannot export: {prefix} would be both a file and the directory of {file}")));
            }
        }
    }
    Ok(())
}

fn load_manifest(dir: &Path) -> anyhow::Result<Manifest> {
    let path = dir.join(MANIFEST);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(usage(format!(
                "{} not found: {} is not a folder `cutover export` wrote",
                path.display(),
                dir.display()
            )));
        }
        Err(e) => return Err(anyhow::Error::new(e).context(format!("reading {}", path.display()))),
    };
    let manifest: Manifest =
        serde_json::from_str(&text).map_err(|e| usage(format!("{} is not a valid manifest: {e}", path.display())))?;
    if manifest.format != FORMAT {
        return Err(usage(format!(
            "{} has format {}; this cutover reads format {FORMAT}",
            path.display(),
            manifest.format
        )));
    }
    Ok(manifest)
}

// ---------------------------------------------------------------------------------------------
// import

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

/// The manifest's file name for a version must be the one export gives it.
fn check_file(entry: &Entry, value_type: ValueType, file: &FileRef, sha: Option<&str>) -> anyhow::Result<()> {
    let expected = file_name(&entry.key, value_type, sha)?;
    if file.file != expected {
        return Err(usage(format!(
            "{MANIFEST}: artifact {:?} names file {:?}; export names it {expected:?}",
            entry.key, file.file
        )));
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
