//! `cutover export DIR`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::Context as _;
use cutover_api::Version;
use cutover_domain::ValueType;

use super::{
    Entry, ExportArgs, FORMAT, FileRef, MANIFEST, Manifest, file_name, file_text, load_manifest, path_in, refuse_links,
    value_type,
};
use crate::commands::Context;
use crate::failure::usage;
use crate::output::{self, OutputFormat};

pub async fn export(context: &Context, args: ExportArgs) -> anyhow::Result<()> {
    let dir = args.dir.as_path();
    let previous = prepare(dir)?;
    let client = &context.client;
    let mut artifacts = crate::commands::artifact::all_artifacts(context, None, false).await?.items;
    artifacts.extend(crate::commands::artifact::all_artifacts(context, None, true).await?.items);
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
