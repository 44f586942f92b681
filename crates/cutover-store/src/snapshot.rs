//! What the resolve path is built from, read in one consistent snapshot.

use cutover_domain::{Content, ValueType};

use crate::db::{self, snapshot};
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
        let (snapshot, position) = snapshot!(self, |conn| {
            let (revision, pins) = pins::fetch_live_pins(conn, workspace_id).await?;
            // Read once the snapshot is taken (by the statement above): past every commit it sees.
            let position = db::wal_position(conn).await?;
            let artifact_types = artifacts::fetch_types(conn, workspace_id).await?;
            let environments = environments::fetch_all(conn, workspace_id).await?;
            let experiments = experiments::fetch_active(conn, workspace_id).await?;
            Ok::<_, crate::StoreError>((
                ResolveSnapshot { revision, pins, artifact_types, environments, experiments },
                position,
            ))
        })?;
        // A view shows only what a crash of the database cannot take back (docs/architecture.md).
        self.wait_durable(position).await?;
        Ok(snapshot)
    }
}
