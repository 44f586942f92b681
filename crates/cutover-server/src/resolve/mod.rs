//! The resolve path: an in-memory snapshot per workspace of everything resolve needs, rebuilt
//! from the store when something changes, so that reads never touch the database.
//!
//! Within one process, a committed write's effects refresh the snapshot before the write returns
//! (see [`crate::effects`]). Across replicas on PostgreSQL, the writing transaction `NOTIFY`s and
//! every replica's listener refreshes (see [`notify`]); a timer refreshes everything as a
//! backstop. A view is read in one read-only transaction, so it is exactly one revision.

pub mod coding;
pub mod exposures;
pub mod native;
pub mod notify;
pub mod ofrep;
pub mod stream;
pub mod ticket;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;
use cutover_domain::{Coverage, ExperimentSeed, ExperimentStatus, ValueType, Variants};
use cutover_store::{ChangeRecord, Store, StoreError};
use serde_json::Value;
use tokio::sync::broadcast;

/// What is live for one (artifact, environment).
#[derive(Debug)]
pub struct LiveValue {
    pub version: i64,
    pub value: Value,
    /// The OFREP single-flag answer, encoded once per revision instead of once per request.
    pub ofrep: axum::body::Bytes,
}

/// A running or paused experiment on one (artifact, environment).
#[derive(Debug)]
pub struct LiveExperiment {
    pub id: Arc<str>,
    pub running: bool,
    pub seed: ExperimentSeed,
    pub coverage: Coverage,
    pub variants: Variants,
    /// The content of each variant's version, in variant order (the control first).
    pub values: Vec<Value>,
}

/// Where a request lands in an experiment.
pub enum Assignment<'a> {
    /// Running, and the user is in it: variant `index`.
    Variant { experiment: &'a LiveExperiment, index: usize },
    /// Paused: everyone gets the control, and nobody is exposed.
    Control { experiment: &'a LiveExperiment },
    /// No experiment, or the user is outside its coverage: what is pinned.
    Pinned,
}

impl LiveExperiment {
    /// `None` when the experiment runs and the request has no targeting key to assign by.
    pub fn assign(&self, targeting_key: Option<&str>) -> Option<Assignment<'_>> {
        if !self.running {
            return Some(Assignment::Control { experiment: self });
        }
        let key = targeting_key?;
        Some(match self.variants.assign(&self.seed, key, self.coverage) {
            Some(index) if index < self.values.len() => Assignment::Variant { experiment: self, index },
            _ => Assignment::Pinned,
        })
    }

    pub fn version(&self, index: usize) -> i64 {
        self.variants.versions().get(index).copied().unwrap_or_default()
    }
}

/// Everything resolve needs for one workspace, as of `revision`.
#[derive(Debug, Default)]
pub struct WorkspaceView {
    pub revision: i64,
    pub environments: HashSet<String>,
    pub artifacts: HashMap<String, ValueType>,
    /// environment → artifact key → live value.
    pub live: HashMap<String, HashMap<String, Arc<LiveValue>>>,
    /// environment → artifact key → running or paused experiment.
    pub experiments: HashMap<String, HashMap<String, Arc<LiveExperiment>>>,
    /// environment → the bulk answer up to its stream ticket, encoded once per revision (and
    /// compressed once per coding asked for), for each environment where no experiment runs or
    /// is paused: the same bytes for every caller.
    pub static_bulk: HashMap<String, ofrep::SharedBulk>,
}

impl WorkspaceView {
    pub fn get(&self, environment: &str, artifact: &str) -> Option<&Arc<LiveValue>> {
        self.live.get(environment).and_then(|pins| pins.get(artifact))
    }

    pub fn experiment(&self, environment: &str, artifact: &str) -> Option<&Arc<LiveExperiment>> {
        self.experiments.get(environment).and_then(|experiments| experiments.get(artifact))
    }
}

pub struct Resolver {
    store: Store,
    views: ArcSwap<HashMap<String, Arc<WorkspaceView>>>,
    streams: Mutex<HashMap<String, broadcast::Sender<Arc<ChangeRecord>>>>,
    /// Serialises rebuilds so that a view's revision only moves forward; holds, per workspace,
    /// the number (from `started`) of the last rebuild that finished.
    rebuilding: tokio::sync::Mutex<HashMap<String, u64>>,
    /// Rebuilds started, counted before each reads the store.
    started: AtomicU64,
}

impl Resolver {
    pub fn new(store: Store) -> Self {
        Self {
            store,
            views: ArcSwap::default(),
            streams: Mutex::default(),
            rebuilding: tokio::sync::Mutex::default(),
            started: AtomicU64::new(0),
        }
    }

    /// Builds every workspace's view: at start-up, and on the backstop timer.
    pub async fn load_all(&self) -> Result<(), StoreError> {
        for workspace in self.store.list_workspaces().await? {
            self.refresh(&workspace.id).await?;
        }
        Ok(())
    }

    /// The current view of a workspace, built on first use (a workspace made after start-up).
    pub async fn view(&self, workspace_id: &str) -> Result<Arc<WorkspaceView>, StoreError> {
        if let Some(view) = self.views.load().get(workspace_id) {
            return Ok(view.clone());
        }
        self.refresh(workspace_id).await?;
        Ok(self.views.load().get(workspace_id).cloned().unwrap_or_default())
    }

    /// Rebuilds one workspace's view from the store, and publishes the revisions it moved past to
    /// the change stream. On return the view holds everything committed before the call.
    ///
    /// Concurrent calls share rebuilds: a call that finds, once its turn comes, that a rebuild of
    /// the workspace *started* after the call began (so read the store after everything the
    /// caller committed) has nothing left to do. Eight writers committing together then cost one
    /// or two rebuilds, not eight in a row.
    pub async fn refresh(&self, workspace_id: &str) -> Result<(), StoreError> {
        let called = self.started.load(Ordering::SeqCst);
        let mut finished = self.rebuilding.lock().await;
        if finished.get(workspace_id).is_some_and(|rebuild| *rebuild > called) {
            return Ok(());
        }
        let rebuild = self.started.fetch_add(1, Ordering::SeqCst) + 1;
        self.rebuild(workspace_id).await?;
        finished.insert(workspace_id.to_owned(), rebuild);
        Ok(())
    }

    async fn rebuild(&self, workspace_id: &str) -> Result<(), StoreError> {
        let previous = self.views.load().get(workspace_id).map(|v| v.revision);
        // One read transaction: the view is exactly the state of one revision.
        let snapshot = self.store.resolve_snapshot(workspace_id).await?;
        let revision = snapshot.revision;
        let mut view = WorkspaceView { revision, ..WorkspaceView::default() };
        view.artifacts = snapshot.artifact_types.into_iter().collect();
        view.environments = snapshot.environments.into_iter().map(|e| e.name.into_string()).collect();
        for pin in snapshot.pins {
            let value = pin.content.value().clone();
            let ofrep =
                ofrep::encode_static(pin.artifact.as_str(), pin.environment.as_str(), pin.version, &value, revision);
            let value = Arc::new(LiveValue { version: pin.version, value, ofrep });
            view.live.entry(pin.environment.into_string()).or_default().insert(pin.artifact.into_string(), value);
        }
        for (experiment, contents) in snapshot.experiments {
            let live = LiveExperiment {
                id: experiment.id.into(),
                running: experiment.lifecycle.status() == ExperimentStatus::Running,
                seed: ExperimentSeed::from_stored(experiment.seed),
                coverage: experiment.coverage,
                variants: experiment.variants,
                values: contents.iter().map(|c| c.value().clone()).collect(),
            };
            view.experiments
                .entry(experiment.environment.into_string())
                .or_default()
                .insert(experiment.artifact.into_string(), Arc::new(live));
        }
        view.static_bulk = view
            .environments
            .iter()
            .filter(|environment| !view.experiments.contains_key(*environment))
            .map(|environment| (environment.clone(), ofrep::SharedBulk::new(view.live.get(environment))))
            .collect();
        let view = Arc::new(view);
        self.views.rcu(|views| {
            let mut views = HashMap::clone(views);
            views.insert(workspace_id.to_owned(), view.clone());
            views
        });
        if let Some(previous) = previous.filter(|p| *p < revision) {
            self.publish(workspace_id, previous).await?;
        }
        Ok(())
    }

    async fn publish(&self, workspace_id: &str, after: i64) -> Result<(), StoreError> {
        let Some(sender) = self.streams.lock().unwrap_or_else(PoisonError::into_inner).get(workspace_id).cloned()
        else {
            return Ok(());
        };
        for change in self.store.changes_since(workspace_id, after, 1_000).await? {
            // No subscriber is not an error.
            let _ = sender.send(Arc::new(change));
        }
        Ok(())
    }

    /// Live changes of a workspace, for the change stream.
    pub fn subscribe(&self, workspace_id: &str) -> broadcast::Receiver<Arc<ChangeRecord>> {
        let mut streams = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
        streams.entry(workspace_id.to_owned()).or_insert_with(|| broadcast::channel(1_024).0).subscribe()
    }
}
