//! What the resolve path is built from, read in one consistent snapshot.

use cutover_domain::{Content, ValueType};

use crate::db::snapshot;
use crate::{Environment, Experiment, LivePin, Result, Store, artifacts, environments, experiments, pins};

/// Everything resolve needs of one workspace, as of `revision`: all read in one transaction,
/// so a view never mixes two revisions.
#[derive(Debug)]
pub struct ResolveSnapshot {
    pub revision: i64,
    pub pins: Vec<LivePin>,
    pub artifact_types: Vec<(String, ValueType)>,
    pub environments: Vec<Environment>,
    /// Running and paused experiments, with the content of each variant's version.
    pub experiments: Vec<(Experiment, Vec<Content>)>,
}

impl Store {
    /// The workspace as resolve sees it, in one read-only transaction.
    pub async fn resolve_snapshot(&self, workspace_id: &str) -> Result<ResolveSnapshot> {
        snapshot!(self, |conn| {
            let (revision, pins) = pins::fetch_live_pins(conn, workspace_id).await?;
            let artifact_types = artifacts::fetch_types(conn, workspace_id).await?;
            let environments = environments::fetch_all(conn, workspace_id).await?;
            let experiments = experiments::fetch_active(conn, workspace_id).await?;
            Ok(ResolveSnapshot { revision, pins, artifact_types, environments, experiments })
        })
    }
}
