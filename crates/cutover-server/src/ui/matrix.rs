//! The live matrix: artifacts × environments, each cell the version live there now (from the
//! resolve view) or at a chosen moment (from pin history).

use std::collections::{HashMap, HashSet};

use axum::extract::{Query, State};
use axum::response::Response;
use cutover_domain::{Access, PageLimit, Timestamp};
use cutover_store::{Artifact, Environment, Store};

use super::page::{Layout, UiError, key_path, ok, when};
use super::session::Session;
use crate::AppState;

#[derive(Debug, Default, serde::Deserialize)]
pub struct MatrixQuery {
    /// Only artifacts whose key starts with this.
    #[serde(default)]
    pub prefix: String,
    /// Only artifacts of this kind.
    #[serde(default)]
    pub kind: String,
    /// A moment to look at (`YYYY-MM-DDTHH:MM[:SS]`, UTC): time travel.
    #[serde(default)]
    pub at: String,
}

pub struct Cell {
    pub version: Option<i64>,
    pub experiment: Option<&'static str>,
    pub rollout: bool,
    /// Where the audit log shows the change that put this version here (time travel).
    pub audit: Option<String>,
    pub since: String,
    pub by: String,
}

/// What was (or is) live in one cell, and where it came from.
struct Found {
    version: i64,
    since: String,
    by: String,
    audit: Option<String>,
}

pub struct Row {
    pub key: String,
    pub path: String,
    pub kind: String,
    pub latest: i64,
    pub cells: Vec<Cell>,
}

pub struct Column {
    pub name: String,
    pub protected: bool,
}

pub struct Matrix {
    pub columns: Vec<Column>,
    pub rows: Vec<Row>,
    pub kinds: Vec<String>,
    pub prefix: String,
    pub kind: String,
    pub at: String,
    /// The moment shown, when travelling in time.
    pub past: Option<String>,
    pub revision: i64,
    pub query: String,
}

#[derive(askama::Template)]
#[template(path = "matrix.html")]
struct MatrixPage {
    layout: Layout,
    matrix: Matrix,
}

#[derive(askama::Template)]
#[template(path = "matrix_table.html")]
struct MatrixFragment {
    matrix: Matrix,
}

pub async fn page(
    State(state): State<AppState>,
    session: Session,
    Query(query): Query<MatrixQuery>,
) -> Result<Response, UiError> {
    let matrix = build(&state, &session, query).await?;
    let mut layout = Layout::new(&session, "matrix", "Live matrix");
    layout.live = matrix.past.is_none();
    ok(&MatrixPage { layout, matrix })
}

/// The table alone: what a change event re-fetches.
pub async fn fragment(
    State(state): State<AppState>,
    session: Session,
    Query(query): Query<MatrixQuery>,
) -> Result<Response, UiError> {
    ok(&MatrixFragment { matrix: build(&state, &session, query).await? })
}

/// Every artifact of the workspace that is not archived, by key.
pub async fn all_artifacts(store: &Store, workspace_id: &str) -> Result<Vec<Artifact>, UiError> {
    let mut artifacts = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store
            .list_artifacts(workspace_id, after.as_deref(), PageLimit::parse(Some(PageLimit::MAX))?, false)
            .await?;
        after = page.items.last().map(|a| a.key.as_str().to_owned());
        artifacts.extend(page.items);
        if page.next.is_none() {
            return Ok(artifacts);
        }
    }
}

/// The environments this session's token may see.
pub async fn visible_environments(state: &AppState, session: &Session) -> Result<Vec<Environment>, UiError> {
    let all = state.store.list_environments(session.auth.workspace_id()).await?;
    Ok(all.into_iter().filter(|e| session.auth.0.may_touch(e.name.as_str())).collect())
}

/// Parses the time-travel moment: a `datetime-local` value (UTC) or RFC 3339.
fn moment(at: &str) -> Result<Option<Timestamp>, UiError> {
    let at = at.trim();
    if at.is_empty() {
        return Ok(None);
    }
    let text = match at.len() {
        16 => format!("{at}:00Z"),
        19 => format!("{at}Z"),
        _ => at.to_owned(),
    };
    Ok(Some(Timestamp::parse_rfc3339("at", &text)?))
}

async fn build(state: &AppState, session: &Session, query: MatrixQuery) -> Result<Matrix, UiError> {
    session.auth.require(Access::Read)?;
    let workspace_id = session.auth.workspace_id();
    let environments = visible_environments(state, session).await?;
    let artifacts = all_artifacts(&state.store, workspace_id).await?;
    let mut kinds: Vec<String> = artifacts.iter().map(|a| a.kind.clone()).collect::<HashSet<_>>().into_iter().collect();
    kinds.sort();
    let shown: Vec<&Artifact> = artifacts
        .iter()
        .filter(|a| a.key.as_str().starts_with(query.prefix.trim()))
        .filter(|a| query.kind.is_empty() || a.kind == query.kind)
        .collect();
    let at = moment(&query.at)?;
    let view = state.resolver.view(workspace_id).await?;
    // The past, from pin history, by environment then artifact; the present is the resolve view.
    let mut past: HashMap<String, HashMap<String, Found>> = HashMap::new();
    if let Some(at) = at {
        for pin in state.store.pins_at(workspace_id, at).await? {
            let audit = format!(
                "/audit?object_type=artifact&object_id={}&at={}",
                urlencode(pin.artifact.as_str()),
                pin.started_at.as_micros()
            );
            let found = Found {
                version: pin.version,
                since: when(pin.started_at),
                by: pin.started_by.name,
                audit: Some(audit),
            };
            past.entry(pin.environment.into_string()).or_default().insert(pin.artifact.into_string(), found);
        }
    }
    let rolling: HashSet<(String, String)> = if at.is_none() {
        state
            .store
            .list_rollouts(workspace_id, None, None, PageLimit::MAX)
            .await?
            .into_iter()
            .filter(|r| !r.state.is_terminal())
            .map(|r| (r.artifact.into_string(), r.environment.into_string()))
            .collect()
    } else {
        HashSet::new()
    };
    let rows = shown
        .iter()
        .map(|artifact| {
            let key = artifact.key.as_str();
            let cells = environments
                .iter()
                .map(|environment| {
                    let env = environment.name.as_str();
                    let found = past.get(env).and_then(|artifacts| artifacts.get(key));
                    let now = view.get(env, key).filter(|_| at.is_none());
                    let experiment = at
                        .is_none()
                        .then(|| view.experiment(env, key))
                        .flatten()
                        .map(|e| if e.running { "experiment" } else { "experiment paused" });
                    Cell {
                        version: found.map(|f| f.version).or(now.map(|v| v.version)),
                        experiment,
                        rollout: !rolling.is_empty() && rolling.contains(&(key.to_owned(), env.to_owned())),
                        audit: found.and_then(|f| f.audit.clone()),
                        since: found.map(|f| f.since.clone()).unwrap_or_default(),
                        by: found.map(|f| f.by.clone()).unwrap_or_default(),
                    }
                })
                .collect();
            Row {
                key: key.to_owned(),
                path: key_path(key),
                kind: artifact.kind.clone(),
                latest: artifact.latest_version,
                cells,
            }
        })
        .collect();
    let columns =
        environments.iter().map(|e| Column { name: e.name.as_str().to_owned(), protected: e.protected }).collect();
    let query_string = format!(
        "prefix={}&kind={}&at={}",
        urlencode(query.prefix.trim()),
        urlencode(&query.kind),
        urlencode(query.at.trim())
    );
    Ok(Matrix {
        columns,
        rows,
        kinds,
        prefix: query.prefix.trim().to_owned(),
        kind: query.kind,
        at: query.at.trim().to_owned(),
        past: at.map(when),
        revision: view.revision,
        query: query_string,
    })
}

pub fn urlencode(text: &str) -> String {
    serde_urlencoded::to_string([("", text)]).map(|s| s[1..].to_owned()).unwrap_or_default()
}
