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

mod export;
mod import;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Args;
use cutover_domain::{ArtifactKey, Content, ValueType};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::failure::usage;

/// The manifest's file name: no artifact key starts with `_`.
pub const MANIFEST: &str = "_cutover.json";
/// The manifest format this binary writes and reads.
pub(super) const FORMAT: u32 = 1;
/// How many hex characters of a sha256 name a pinned version's file.
pub(super) const FILE_SHA: usize = 12;

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
pub(super) struct Manifest {
    pub(super) format: u32,
    pub(super) artifacts: Vec<Entry>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Entry {
    pub(super) key: String,
    pub(super) value_type: String,
    pub(super) kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub(super) description: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(super) archived: bool,
    /// The latest version; absent before the first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) latest: Option<FileRef>,
    /// Versions live somewhere that are not the latest, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) pinned: Vec<FileRef>,
    /// Environment → sha256 of the content live there.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(super) pins: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileRef {
    pub(super) file: String,
    pub(super) sha256: String,
}

/// The file of an artifact's version, relative to the folder, `/`-separated: `<key>.<ext>` for
/// the latest, `<key>@<sha>.<ext>` for another. Refuses a key that could leave the folder.
pub(super) fn file_name(key: &str, value_type: ValueType, sha256: Option<&str>) -> anyhow::Result<String> {
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

pub(super) fn path_in(dir: &Path, file: &str) -> PathBuf {
    file.split('/').fold(dir.to_path_buf(), |path, part| path.join(part))
}

/// A version's content as its file holds it: the text itself, or pretty JSON.
pub(super) fn file_text(content: &Value) -> anyhow::Result<String> {
    Ok(match content {
        Value::String(text) => text.clone(),
        other => serde_json::to_string_pretty(other)? + "\n",
    })
}

/// The content a file holds, checked against the value type.
pub(super) fn read_content(dir: &Path, file: &str, value_type: ValueType) -> anyhow::Result<Content> {
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

pub(super) fn value_type(entry: &Entry) -> anyhow::Result<ValueType> {
    entry.value_type.parse::<ValueType>().map_err(|e| usage(format!("{MANIFEST}: artifact {:?}: {e}", entry.key)))
}

/// Refuses a symbolic link inside the folder on the way to a file (a directory or the file
/// itself): export writes, and import reads, inside the folder only.
pub(super) fn refuse_links(dir: &Path, file: &str) -> anyhow::Result<()> {
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

pub(super) fn load_manifest(dir: &Path) -> anyhow::Result<Manifest> {
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

/// The manifest's file name for a version must be the one export gives it.
pub(super) fn check_file(
    entry: &Entry,
    value_type: ValueType,
    file: &FileRef,
    sha: Option<&str>,
) -> anyhow::Result<()> {
    let expected = file_name(&entry.key, value_type, sha)?;
    if file.file != expected {
        return Err(usage(format!(
            "{MANIFEST}: artifact {:?} names file {:?}; export names it {expected:?}",
            entry.key, file.file
        )));
    }
    Ok(())
}

pub use export::export;
pub use import::import;
