//! A typed async client for Cutover's HTTP API, used by the `cutover` CLI, tests and benchmarks.
//!
//! Every method maps to one route and returns the wire types of `cutover-api`. Failures come back
//! as one [`ClientError`]: the server's own error (`{"error": {"code", "message", "details"}}`),
//! a transport failure that names the server it could not reach, or a response that was not the
//! JSON the route promises.
#![forbid(unsafe_code)]

mod error;
mod path;
mod pools;
mod queue;

use std::time::Duration;

use cutover_api::{
    Artifact, AuditEvent, CompleteExperiment, CreateArtifact, CreateEnvironment, CreateExperiment, CreateRollout,
    CreateToken, CreateVersion, CreateWorkspace, Environment, EventsAccepted, Experiment, ExperimentActionResult,
    ExperimentResults, Health, Page, Pin, PinWrite, PostEvents, Promote, Promoted, ReportTask, Resolved, Rollout,
    RolloutTask, SetEnvironments, SetPin, Token, TokenCreated, UpdateArtifact, UpdateEnvironment, UpdateExperiment,
    Version, WhoAmI, Workspace, WorkspaceCreated,
};
use reqwest::header::IF_MATCH;
use reqwest::{Method, RequestBuilder, Response, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use crate::error::ClientError;
use crate::path::segment;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// `?limit=&cursor=` of the paged routes. Leave both out for the server's default first page.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PageQuery {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// Filters of `GET /api/v1/audit`; fields left out do not filter.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AuditQuery {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object_id: Option<String>,
    /// A token id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// An action or a prefix of actions (`pin.`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// RFC 3339: events at or after this moment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// RFC 3339: events before this moment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// `?reason=` of `DELETE /api/v1/artifacts/{key}/pins/{env}`.
#[derive(Serialize)]
struct ReasonQuery<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
}

/// `?environment=&targeting_key=` of `GET /api/v1/resolve/{key}`.
#[derive(Serialize)]
struct ResolveQuery<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    environment: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    targeting_key: Option<&'a str>,
}

/// `?status=` of `GET /api/v1/environments/{env}/experiments`.
#[derive(Serialize)]
struct StatusQuery<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'a str>,
}

/// `?attempt=` of a task's log.
#[derive(Serialize)]
struct LogQuery {
    #[serde(skip_serializing_if = "Option::is_none")]
    attempt: Option<u32>,
}

/// `?environment=&state=&limit=` of `GET /api/v1/rollouts`.
#[derive(Serialize)]
struct RolloutQuery<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    environment: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    limit: Option<u32>,
}

/// A connection to one Cutover server, authenticated by at most one token.
///
/// Cheap to clone: clones share one connection pool.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    /// Without a trailing slash, so that `base + "/api/v1/..."` is the route.
    base: String,
    token: Option<String>,
}

/// Never shows the token.
impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Client {
    /// A client for the server at `server_url` (e.g. `http://127.0.0.1:7300`, or with a path
    /// prefix behind a proxy), sending `token` as `Authorization: Bearer <token>`. Without a
    /// scheme (`127.0.0.1:7300`, `localhost:7300`), `http://` is meant.
    pub fn new(server_url: &str, token: Option<String>) -> Result<Self, ClientError> {
        let invalid = |reason: String| ClientError::InvalidServerUrl { url: server_url.to_owned(), reason };
        let with_scheme = if server_url.contains("://") {
            server_url.trim().to_owned()
        } else {
            format!("http://{}", server_url.trim())
        };
        let url = Url::parse(&with_scheme).map_err(|err| invalid(err.to_string()))?;
        if url.host_str().is_none_or(str::is_empty) {
            return Err(invalid("it names no host".into()));
        }
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid("the scheme must be http or https".into()));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(invalid("must not have a query or fragment".into()));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("cutover-client/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|err| invalid(err.to_string()))?;
        Ok(Self { http, base: url.as_str().trim_end_matches('/').to_owned(), token })
    }

    /// The server's URL, as given to [`Client::new`] (with its scheme, without a trailing slash).
    pub fn server_url(&self) -> &str {
        &self.base
    }

    /// `GET /healthz`: the process is up.
    pub async fn health(&self) -> Result<Health, ClientError> {
        self.send(self.request(Method::GET, "/healthz")).await
    }

    /// `GET /readyz`: the process can serve (its database answers).
    pub async fn ready(&self) -> Result<Health, ClientError> {
        self.send(self.request(Method::GET, "/readyz")).await
    }

    /// `GET /api/v1/whoami`: the token of this client and its workspace.
    pub async fn whoami(&self) -> Result<WhoAmI, ClientError> {
        self.send(self.request(Method::GET, "/api/v1/whoami")).await
    }

    /// `POST /api/v1/workspaces`: a new workspace and its first owner token (admin owners only).
    pub async fn create_workspace(&self, body: &CreateWorkspace) -> Result<WorkspaceCreated, ClientError> {
        self.send(self.request(Method::POST, "/api/v1/workspaces").json(body)).await
    }

    /// `GET /api/v1/workspaces`.
    pub async fn list_workspaces(&self) -> Result<Page<Workspace>, ClientError> {
        self.send(self.request(Method::GET, "/api/v1/workspaces")).await
    }

    /// `GET /api/v1/environments`.
    pub async fn list_environments(&self) -> Result<Page<Environment>, ClientError> {
        self.send(self.request(Method::GET, "/api/v1/environments")).await
    }

    /// `POST /api/v1/environments`.
    pub async fn create_environment(&self, body: &CreateEnvironment) -> Result<Environment, ClientError> {
        self.send(self.request(Method::POST, "/api/v1/environments").json(body)).await
    }

    /// `GET /api/v1/environments/{name}`.
    pub async fn get_environment(&self, name: &str) -> Result<Environment, ClientError> {
        let path = format!("/api/v1/environments/{}", segment(name)?);
        self.send(self.request(Method::GET, &path)).await
    }

    /// `PATCH /api/v1/environments/{name}`: fields left out are unchanged.
    pub async fn update_environment(&self, name: &str, body: &UpdateEnvironment) -> Result<Environment, ClientError> {
        let path = format!("/api/v1/environments/{}", segment(name)?);
        self.send(self.request(Method::PATCH, &path).json(body)).await
    }

    /// `DELETE /api/v1/environments/{name}`.
    pub async fn delete_environment(&self, name: &str) -> Result<(), ClientError> {
        let path = format!("/api/v1/environments/{}", segment(name)?);
        self.send_empty(self.request(Method::DELETE, &path)).await
    }

    /// `GET /api/v1/artifacts`: one page, in key order.
    pub async fn list_artifacts(&self, page: &PageQuery) -> Result<Page<Artifact>, ClientError> {
        self.send(self.request(Method::GET, "/api/v1/artifacts").query(page)).await
    }

    /// `GET /api/v1/artifacts?archived=true`: one page of the archived artifacts, in key order.
    pub async fn list_archived_artifacts(&self, page: &PageQuery) -> Result<Page<Artifact>, ClientError> {
        self.send(self.request(Method::GET, "/api/v1/artifacts").query(page).query(&[("archived", "true")])).await
    }

    /// `POST /api/v1/artifacts/{key}/archive`.
    pub async fn archive_artifact(&self, key: &str) -> Result<Artifact, ClientError> {
        let path = format!("/api/v1/artifacts/{}/archive", segment(key)?);
        self.send(self.request(Method::POST, &path)).await
    }

    /// `POST /api/v1/artifacts/{key}/unarchive`.
    pub async fn unarchive_artifact(&self, key: &str) -> Result<Artifact, ClientError> {
        let path = format!("/api/v1/artifacts/{}/unarchive", segment(key)?);
        self.send(self.request(Method::POST, &path)).await
    }

    /// `DELETE /api/v1/artifacts/{key}`: only when nothing refers to it.
    pub async fn delete_artifact(&self, key: &str) -> Result<(), ClientError> {
        let path = format!("/api/v1/artifacts/{}", segment(key)?);
        self.send_empty(self.request(Method::DELETE, &path)).await
    }

    /// `POST /api/v1/artifacts`.
    pub async fn create_artifact(&self, body: &CreateArtifact) -> Result<Artifact, ClientError> {
        self.send(self.request(Method::POST, "/api/v1/artifacts").json(body)).await
    }

    /// `GET /api/v1/artifacts/{key}`.
    pub async fn get_artifact(&self, key: &str) -> Result<Artifact, ClientError> {
        let path = format!("/api/v1/artifacts/{}", segment(key)?);
        self.send(self.request(Method::GET, &path)).await
    }

    /// `PATCH /api/v1/artifacts/{key}`: fields left out are unchanged.
    pub async fn update_artifact(&self, key: &str, body: &UpdateArtifact) -> Result<Artifact, ClientError> {
        let path = format!("/api/v1/artifacts/{}", segment(key)?);
        self.send(self.request(Method::PATCH, &path).json(body)).await
    }

    /// `GET /api/v1/artifacts/{key}/versions`: one page, newest first.
    pub async fn list_versions(&self, key: &str, page: &PageQuery) -> Result<Page<Version>, ClientError> {
        let path = format!("/api/v1/artifacts/{}/versions", segment(key)?);
        self.send(self.request(Method::GET, &path).query(page)).await
    }

    /// `POST /api/v1/artifacts/{key}/versions`: publishes the next version.
    pub async fn create_version(&self, key: &str, body: &CreateVersion) -> Result<Version, ClientError> {
        let path = format!("/api/v1/artifacts/{}/versions", segment(key)?);
        self.send(self.request(Method::POST, &path).json(body)).await
    }

    /// `GET /api/v1/artifacts/{key}/versions/{number}`.
    pub async fn get_version(&self, key: &str, number: i64) -> Result<Version, ClientError> {
        let path = format!("/api/v1/artifacts/{}/versions/{number}", segment(key)?);
        self.send(self.request(Method::GET, &path)).await
    }

    /// `PUT /api/v1/artifacts/{key}/versions/{number}/environments`: replaces the set of
    /// environments the version owns (an empty set releases them all).
    pub async fn set_version_environments(
        &self,
        key: &str,
        number: i64,
        body: &SetEnvironments,
    ) -> Result<PinWrite, ClientError> {
        let path = format!("/api/v1/artifacts/{}/versions/{number}/environments", segment(key)?);
        self.send(self.request(Method::PUT, &path).json(body)).await
    }

    /// `GET /api/v1/artifacts/{key}/pins`: the environments the artifact is live in.
    pub async fn list_pins(&self, key: &str) -> Result<Page<Pin>, ClientError> {
        let path = format!("/api/v1/artifacts/{}/pins", segment(key)?);
        self.send(self.request(Method::GET, &path)).await
    }

    /// `GET /api/v1/artifacts/{key}/pins/{environment}`: the current pin; its `revision` is what
    /// [`set_pin`](Self::set_pin) and [`unpin`](Self::unpin) take as `if_match`. A 404 refusal
    /// when nothing is pinned there.
    pub async fn get_pin(&self, key: &str, environment: &str) -> Result<Pin, ClientError> {
        self.send(self.request(Method::GET, &pin_path(key, environment)?)).await
    }

    /// `PUT /api/v1/artifacts/{key}/pins/{environment}`: makes `body.version` live there. With
    /// `if_match`, only if the pin is still the one opened at that revision (0: nothing pinned);
    /// otherwise a 412 `precondition_failed` refusal and nothing is written.
    pub async fn set_pin(
        &self,
        key: &str,
        environment: &str,
        body: &SetPin,
        if_match: Option<i64>,
    ) -> Result<PinWrite, ClientError> {
        let request = self.request(Method::PUT, &pin_path(key, environment)?).json(body);
        self.send(with_if_match(request, if_match)).await
    }

    /// `DELETE /api/v1/artifacts/{key}/pins/{environment}`: nothing of the artifact is live there
    /// afterwards. `if_match` as for [`set_pin`](Self::set_pin).
    pub async fn unpin(
        &self,
        key: &str,
        environment: &str,
        reason: Option<&str>,
        if_match: Option<i64>,
    ) -> Result<PinWrite, ClientError> {
        let request = self.request(Method::DELETE, &pin_path(key, environment)?).query(&ReasonQuery { reason });
        self.send(with_if_match(request, if_match)).await
    }

    /// `GET /api/v1/artifacts/{key}/pins/{environment}/history`: one page of intervals, newest
    /// first; the open one (no `ended_at`) is what is live now.
    pub async fn pin_history(&self, key: &str, environment: &str, page: &PageQuery) -> Result<Page<Pin>, ClientError> {
        let path = format!("{}/history", pin_path(key, environment)?);
        self.send(self.request(Method::GET, &path).query(page)).await
    }

    /// `GET /api/v1/environments/{name}/pins`: what is live in one environment, across artifacts.
    pub async fn environment_pins(&self, name: &str) -> Result<Page<Pin>, ClientError> {
        let path = format!("/api/v1/environments/{}/pins", segment(name)?);
        self.send(self.request(Method::GET, &path)).await
    }

    /// `POST /api/v1/promote`: pins the version live in `from` to every `to`, atomically; with
    /// `dry_run`, answers the same changes and writes nothing.
    pub async fn promote(&self, body: &Promote) -> Result<Promoted, ClientError> {
        self.send(self.request(Method::POST, "/api/v1/promote").json(body)).await
    }

    /// `GET /api/v1/resolve/{key}?environment=&targeting_key=`: what is live (`version` and
    /// `value` are `None` when nothing is pinned). `environment` may be left out with an `sdk`
    /// token, which is bound to one. Where an experiment runs, `targeting_key` (who is asking)
    /// picks the variant, and is required.
    pub async fn resolve(
        &self,
        key: &str,
        environment: Option<&str>,
        targeting_key: Option<&str>,
    ) -> Result<Resolved, ClientError> {
        let path = format!("/api/v1/resolve/{}", segment(key)?);
        self.send(self.request(Method::GET, &path).query(&ResolveQuery { environment, targeting_key })).await
    }

    /// `GET /api/v1/environments/{env}/experiments?status=`: oldest first, deleted ones left out;
    /// `status` (`created`, `running`, `paused` or `completed`) filters.
    pub async fn list_experiments(
        &self,
        environment: &str,
        status: Option<&str>,
    ) -> Result<Page<Experiment>, ClientError> {
        let path = format!("/api/v1/environments/{}/experiments", segment(environment)?);
        self.send(self.request(Method::GET, &path).query(&StatusQuery { status })).await
    }

    /// `POST /api/v1/environments/{env}/experiments`: a 409 refusal while another experiment that
    /// is not completed holds the artifact there.
    pub async fn create_experiment(
        &self,
        environment: &str,
        body: &CreateExperiment,
    ) -> Result<Experiment, ClientError> {
        let path = format!("/api/v1/environments/{}/experiments", segment(environment)?);
        self.send(self.request(Method::POST, &path).json(body)).await
    }

    /// `GET /api/v1/experiments/{id}`: deleted ones too, with `deleted_at`.
    pub async fn get_experiment(&self, id: &str) -> Result<Experiment, ClientError> {
        self.send(self.request(Method::GET, &experiment_path(id)?)).await
    }

    /// `PATCH /api/v1/experiments/{id}`: name and hypothesis only; fields left out are unchanged.
    pub async fn update_experiment(&self, id: &str, body: &UpdateExperiment) -> Result<Experiment, ClientError> {
        self.send(self.request(Method::PATCH, &experiment_path(id)?).json(body)).await
    }

    /// `DELETE /api/v1/experiments/{id}`: soft delete; the experiment, now with `deleted_at`.
    pub async fn delete_experiment(&self, id: &str) -> Result<Experiment, ClientError> {
        self.send(self.request(Method::DELETE, &experiment_path(id)?)).await
    }

    /// `POST /api/v1/experiments/{id}/start`. Every action answers 409 `illegal_transition`
    /// (the current status in `details.status`) when the status does not allow it.
    pub async fn start_experiment(&self, id: &str) -> Result<ExperimentActionResult, ClientError> {
        self.experiment_action(id, "start", None).await
    }

    /// `POST /api/v1/experiments/{id}/pause`: everyone gets the control meanwhile.
    pub async fn pause_experiment(&self, id: &str) -> Result<ExperimentActionResult, ClientError> {
        self.experiment_action(id, "pause", None).await
    }

    /// `POST /api/v1/experiments/{id}/resume`.
    pub async fn resume_experiment(&self, id: &str) -> Result<ExperimentActionResult, ClientError> {
        self.experiment_action(id, "resume", None).await
    }

    /// `POST /api/v1/experiments/{id}/complete`: with `winner` (a variant's version), pins it to
    /// the experiment's environment in the same transaction; the answer's `pinned` is that write.
    pub async fn complete_experiment(
        &self,
        id: &str,
        winner: Option<i64>,
    ) -> Result<ExperimentActionResult, ClientError> {
        self.experiment_action(id, "complete", Some(&CompleteExperiment { winner })).await
    }

    /// `GET /api/v1/experiments/{id}/results`: per metric and variant, against the control, and
    /// the sample-ratio-mismatch check.
    pub async fn experiment_results(&self, id: &str) -> Result<ExperimentResults, ClientError> {
        let path = format!("{}/results", experiment_path(id)?);
        self.send(self.request(Method::GET, &path)).await
    }

    /// `POST /api/v1/events`: a batch of metric events (at most 1,000), all recorded or, when one
    /// is invalid, none.
    pub async fn post_events(&self, body: &PostEvents) -> Result<EventsAccepted, ClientError> {
        self.send(self.request(Method::POST, "/api/v1/events").json(body)).await
    }

    /// `POST /api/v1/rollouts`: one operation per deployment target of the environment, which
    /// the server's engine then drives; a 409 refusal when the environment has no targets.
    pub async fn create_rollout(&self, body: &CreateRollout) -> Result<Rollout, ClientError> {
        self.send(self.request(Method::POST, "/api/v1/rollouts").json(body)).await
    }

    /// `GET /api/v1/rollouts?environment=&state=&limit=`: newest first, without operations;
    /// `state` is one of the rollout states, `limit` 1 to 200 (the server's default: 50).
    pub async fn list_rollouts(
        &self,
        environment: Option<&str>,
        state: Option<&str>,
        limit: Option<u32>,
    ) -> Result<Page<Rollout>, ClientError> {
        let query = RolloutQuery { environment, state, limit };
        self.send(self.request(Method::GET, "/api/v1/rollouts").query(&query)).await
    }

    /// `GET /api/v1/rollouts/{id}`: with its operations, their tasks, and `progress`.
    pub async fn get_rollout(&self, id: &str) -> Result<Rollout, ClientError> {
        self.send(self.request(Method::GET, &rollout_path(id)?)).await
    }

    /// `POST /api/v1/rollouts/{id}/stop`: nothing more starts; running tasks are asked to stop.
    /// Every control answers 409 `conflict` (the current state in `details.state`)
    /// when the rollout's state does not allow it.
    pub async fn stop_rollout(&self, id: &str) -> Result<Rollout, ClientError> {
        self.rollout_control(id, "stop").await
    }

    /// `POST /api/v1/rollouts/{id}/resume`: a stopped rollout runs again.
    pub async fn resume_rollout(&self, id: &str) -> Result<Rollout, ClientError> {
        self.rollout_control(id, "resume").await
    }

    /// `POST /api/v1/rollouts/{id}/cancel`: terminal; the pin does not move.
    pub async fn cancel_rollout(&self, id: &str) -> Result<Rollout, ClientError> {
        self.rollout_control(id, "cancel").await
    }

    /// `POST /api/v1/rollouts/{id}/release`: a paused rollout's failures count as under
    /// `continue` from now on.
    pub async fn release_rollout(&self, id: &str) -> Result<Rollout, ClientError> {
        self.rollout_control(id, "release").await
    }

    /// `POST /api/v1/rollouts/{id}/retry`: failed operations of a degraded or paused rollout run
    /// again.
    pub async fn retry_rollout(&self, id: &str) -> Result<Rollout, ClientError> {
        self.rollout_control(id, "retry").await
    }

    /// `POST /api/v1/rollouts/{rollout}/tasks/{task}/complete`: a running `manual` task succeeded;
    /// `message` goes into its log.
    pub async fn complete_task(
        &self,
        rollout: &str,
        task: &str,
        message: Option<&str>,
    ) -> Result<RolloutTask, ClientError> {
        self.report_task(rollout, task, "complete", message).await
    }

    /// `POST /api/v1/rollouts/{rollout}/tasks/{task}/fail`: a running `manual` task failed;
    /// `message` goes into its log and becomes its error.
    pub async fn fail_task(
        &self,
        rollout: &str,
        task: &str,
        message: Option<&str>,
    ) -> Result<RolloutTask, ClientError> {
        self.report_task(rollout, task, "fail", message).await
    }

    /// `GET /api/v1/rollouts/{rollout}/tasks/{task}/log[?attempt=N]`: the kept output of the
    /// task's attempt `attempt` (from 1), or of its latest, as text.
    pub async fn task_log(&self, rollout: &str, task: &str, attempt: Option<u32>) -> Result<String, ClientError> {
        let path = format!("{}/log", task_path(rollout, task)?);
        let response = self.execute(self.request(Method::GET, &path).query(&LogQuery { attempt })).await?;
        response.text().await.map_err(|err| ClientError::transport(&self.base, &err))
    }

    /// `GET /api/v1/tokens`: the workspace's tokens, revoked ones included.
    pub async fn list_tokens(&self) -> Result<Page<Token>, ClientError> {
        self.send(self.request(Method::GET, "/api/v1/tokens")).await
    }

    /// `POST /api/v1/tokens`: the answer holds the secret, which the server never shows again.
    pub async fn create_token(&self, body: &CreateToken) -> Result<TokenCreated, ClientError> {
        self.send(self.request(Method::POST, "/api/v1/tokens").json(body)).await
    }

    /// `DELETE /api/v1/tokens/{id}`: the token, now revoked.
    pub async fn revoke_token(&self, id: &str) -> Result<Token, ClientError> {
        let path = format!("/api/v1/tokens/{}", segment(id)?);
        self.send(self.request(Method::DELETE, &path)).await
    }

    /// `GET /api/v1/audit`: one page, newest first.
    pub async fn list_audit(&self, query: &AuditQuery) -> Result<Page<AuditEvent>, ClientError> {
        self.send(self.request(Method::GET, "/api/v1/audit").query(query)).await
    }

    async fn experiment_action(
        &self,
        id: &str,
        action: &str,
        body: Option<&CompleteExperiment>,
    ) -> Result<ExperimentActionResult, ClientError> {
        let request = self.request(Method::POST, &format!("{}/{action}", experiment_path(id)?));
        self.send(match body {
            Some(body) => request.json(body),
            None => request,
        })
        .await
    }

    async fn rollout_control(&self, id: &str, control: &str) -> Result<Rollout, ClientError> {
        self.send(self.request(Method::POST, &format!("{}/{control}", rollout_path(id)?))).await
    }

    async fn report_task(
        &self,
        rollout: &str,
        task: &str,
        outcome: &str,
        message: Option<&str>,
    ) -> Result<RolloutTask, ClientError> {
        let path = format!("{}/{outcome}", task_path(rollout, task)?);
        let body = ReportTask { message: message.map(str::to_owned) };
        self.send(self.request(Method::POST, &path).json(&body)).await
    }

    /// `path` starts with `/`; its variable segments are already encoded by [`segment`].
    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    async fn send<T: DeserializeOwned>(&self, request: RequestBuilder) -> Result<T, ClientError> {
        let response = self.execute(request).await?;
        let url = response.url().to_string();
        let bytes = response.bytes().await.map_err(|err| ClientError::transport(&self.base, &err))?;
        serde_json::from_slice(&bytes).map_err(|err| ClientError::Decode { url, reason: err.to_string() })
    }

    async fn send_empty(&self, request: RequestBuilder) -> Result<(), ClientError> {
        self.execute(request).await.map(drop)
    }

    /// Sends the request; a response that is not a success becomes an error.
    async fn execute(&self, request: RequestBuilder) -> Result<Response, ClientError> {
        let response = request.send().await.map_err(|err| ClientError::transport(&self.base, &err))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        // The body is only context here: if it cannot be read, the status alone still explains.
        let body = response.bytes().await.unwrap_or_default();
        Err(ClientError::from_response(status, &body))
    }
}

/// `/api/v1/artifacts/{key}/pins/{environment}`, both encoded.
fn pin_path(key: &str, environment: &str) -> Result<String, ClientError> {
    Ok(format!("/api/v1/artifacts/{}/pins/{}", segment(key)?, segment(environment)?))
}

/// `/api/v1/experiments/{id}`, encoded.
fn experiment_path(id: &str) -> Result<String, ClientError> {
    Ok(format!("/api/v1/experiments/{}", segment(id)?))
}

/// `/api/v1/rollouts/{id}`, encoded.
fn rollout_path(id: &str) -> Result<String, ClientError> {
    Ok(format!("/api/v1/rollouts/{}", segment(id)?))
}

/// `/api/v1/rollouts/{rollout}/tasks/{task}`, both encoded.
fn task_path(rollout: &str, task: &str) -> Result<String, ClientError> {
    Ok(format!("{}/tasks/{}", rollout_path(rollout)?, segment(task)?))
}

fn with_if_match(request: RequestBuilder, if_match: Option<i64>) -> RequestBuilder {
    match if_match {
        // Quoted, as the server's `ETag` is (it accepts the bare number too).
        Some(revision) => request.header(IF_MATCH, format!("\"{revision}\"")),
        None => request,
    }
}

#[cfg(test)]
mod tests;
