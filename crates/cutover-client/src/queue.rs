//! The submit queue: `/api/v1/queues…`.

use cutover_api::queue::{ChangeRequest, CheckReport, CreateQueue, Queue, QueueBatch, SubmitChangeRequest};
use reqwest::Method;

use crate::path::segment;
use crate::{Client, ClientError};

fn queue_path(name: &str) -> Result<String, ClientError> {
    Ok(format!("/api/v1/queues/{}", segment(name)?))
}

impl Client {
    /// `POST /api/v1/queues`.
    pub async fn create_queue(&self, body: &CreateQueue) -> Result<Queue, ClientError> {
        self.send(self.request(Method::POST, "/api/v1/queues").json(body)).await
    }

    /// `GET /api/v1/queues`.
    pub async fn list_queues(&self) -> Result<Vec<Queue>, ClientError> {
        self.send(self.request(Method::GET, "/api/v1/queues")).await
    }

    /// `GET /api/v1/queues/{queue}`.
    pub async fn get_queue(&self, name: &str) -> Result<Queue, ClientError> {
        self.send(self.request(Method::GET, &queue_path(name)?)).await
    }

    /// `POST /api/v1/queues/{queue}/requests`.
    pub async fn submit_change(&self, name: &str, body: &SubmitChangeRequest) -> Result<ChangeRequest, ClientError> {
        self.send(self.request(Method::POST, &format!("{}/requests", queue_path(name)?)).json(body)).await
    }

    /// `GET /api/v1/queues/{queue}/requests?state=live|all`, newest first.
    pub async fn list_changes(&self, name: &str, live: bool, limit: u32) -> Result<Vec<ChangeRequest>, ClientError> {
        let state = if live { "live" } else { "all" };
        let path = format!("{}/requests?state={state}&limit={limit}", queue_path(name)?);
        self.send(self.request(Method::GET, &path)).await
    }

    /// `GET /api/v1/queues/{queue}/requests/{id}`: with its history.
    pub async fn get_change(&self, name: &str, id: u64) -> Result<ChangeRequest, ClientError> {
        self.send(self.request(Method::GET, &format!("{}/requests/{id}", queue_path(name)?))).await
    }

    /// `POST /api/v1/queues/{queue}/requests/{id}/cancel`.
    pub async fn cancel_change(&self, name: &str, id: u64) -> Result<ChangeRequest, ClientError> {
        self.send(self.request(Method::POST, &format!("{}/requests/{id}/cancel", queue_path(name)?))).await
    }

    /// `GET /api/v1/queues/{queue}/batches?state=active|all`.
    pub async fn queue_batches(&self, name: &str, active: bool) -> Result<Vec<QueueBatch>, ClientError> {
        let state = if active { "active" } else { "all" };
        self.send(self.request(Method::GET, &format!("{}/batches?state={state}", queue_path(name)?))).await
    }

    /// `POST /api/v1/queues/{queue}/pause`.
    pub async fn pause_queue(&self, name: &str) -> Result<Queue, ClientError> {
        self.send(self.request(Method::POST, &format!("{}/pause", queue_path(name)?))).await
    }

    /// `POST /api/v1/queues/{queue}/resume`.
    pub async fn resume_queue(&self, name: &str) -> Result<Queue, ClientError> {
        self.send(self.request(Method::POST, &format!("{}/resume", queue_path(name)?))).await
    }

    /// `POST /api/v1/queues/{queue}/checks/{check}/pass|fail`: a person's report of a manual check.
    pub async fn report_check(&self, name: &str, check: u64, passed: bool, output: &str) -> Result<(), ClientError> {
        let verdict = if passed { "pass" } else { "fail" };
        let body = CheckReport { output: output.to_owned() };
        self.send_empty(
            self.request(Method::POST, &format!("{}/checks/{check}/{verdict}", queue_path(name)?)).json(&body),
        )
        .await
    }
}
