//! Warm pools: `/api/v1/pools…` and `/api/v1/instances/{id}`.

use cutover_api::{CreatePool, Pool, PoolAgent, PoolInstance, ReportAgentState, UpdatePool};
use reqwest::Method;

use crate::path::segment;
use crate::{Client, ClientError};

fn pool_path(name: &str) -> Result<String, ClientError> {
    Ok(format!("/api/v1/pools/{}", segment(name)?))
}

impl Client {
    /// `POST /api/v1/pools`.
    pub async fn create_pool(&self, body: &CreatePool) -> Result<Pool, ClientError> {
        self.send(self.request(Method::POST, "/api/v1/pools").json(body)).await
    }

    /// `GET /api/v1/pools`: without counts.
    pub async fn list_pools(&self) -> Result<Vec<Pool>, ClientError> {
        self.send(self.request(Method::GET, "/api/v1/pools")).await
    }

    /// `GET /api/v1/pools/{pool}`: with its counts now.
    pub async fn get_pool(&self, name: &str) -> Result<Pool, ClientError> {
        self.send(self.request(Method::GET, &pool_path(name)?)).await
    }

    /// `PATCH /api/v1/pools/{pool}`.
    pub async fn update_pool(&self, name: &str, body: &UpdatePool) -> Result<Pool, ClientError> {
        self.send(self.request(Method::PATCH, &pool_path(name)?).json(body)).await
    }

    /// `DELETE /api/v1/pools/{pool}`.
    pub async fn delete_pool(&self, name: &str) -> Result<(), ClientError> {
        self.send_empty(self.request(Method::DELETE, &pool_path(name)?)).await
    }

    /// `POST /api/v1/pools/{pool}/pause`.
    pub async fn pause_pool(&self, name: &str) -> Result<Pool, ClientError> {
        self.send(self.request(Method::POST, &format!("{}/pause", pool_path(name)?))).await
    }

    /// `POST /api/v1/pools/{pool}/resume`.
    pub async fn resume_pool(&self, name: &str) -> Result<Pool, ClientError> {
        self.send(self.request(Method::POST, &format!("{}/resume", pool_path(name)?))).await
    }

    /// `POST /api/v1/pools/{pool}/claim`: one ready instance, now yours; a 409 `pool_empty`
    /// when none is ready.
    pub async fn claim_instance(&self, name: &str) -> Result<PoolInstance, ClientError> {
        self.send(self.request(Method::POST, &format!("{}/claim", pool_path(name)?))).await
    }

    /// `GET /api/v1/pools/{pool}/instances`.
    pub async fn pool_instances(&self, name: &str) -> Result<Vec<PoolInstance>, ClientError> {
        self.send(self.request(Method::GET, &format!("{}/instances", pool_path(name)?))).await
    }

    /// `GET /api/v1/instances/{id}`: with its builds and agents.
    pub async fn get_instance(&self, id: &str) -> Result<PoolInstance, ClientError> {
        self.send(self.request(Method::GET, &format!("/api/v1/instances/{}", segment(id)?))).await
    }

    /// `POST /api/v1/instances/{id}/agents/{name}/state`, as the agent: this client's token must
    /// be the instance's agent token.
    pub async fn report_agent_state(&self, id: &str, agent: &str, state: &str) -> Result<PoolAgent, ClientError> {
        let path = format!("/api/v1/instances/{}/agents/{}/state", segment(id)?, segment(agent)?);
        let body = ReportAgentState { state: state.to_owned() };
        self.send(self.request(Method::POST, &path).json(&body)).await
    }
}
