//! The `webhook` executor: one signed POST per task run, retried with backoff until the receiver
//! accepts it (2xx); the result then comes back through the task's callback endpoint
//! (`api::rollouts::task_callback`), which records it. The run here only keeps the deadline: no
//! result within the timeout fails the task.
//!
//! A delivery carries `Idempotency-Key` (the task's, the same on every run),
//! `X-Cutover-Timestamp` (unix seconds) and `X-Cutover-Signature: sha256=<hex>`, the
//! HMAC-SHA256 of `<timestamp>.<body>` under the executor's secret.

use std::sync::Arc;
use std::time::Duration;

use cutover_domain::rollouts::{CallbackToken, WebhookSecret};
use cutover_store::{Store, TaskOutcome};
use hmac::{Hmac, Mac};
use serde::Serialize;
use serde_json::{Map, Value};
use sha2::Sha256;
use tokio::sync::watch;
use tokio::time::Instant;

use super::admission::Admission;
use super::executors::{RunEnd, TaskContext};

/// The first retry waits this long; each next one twice as long, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Longest one delivery attempt may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);

/// Where and how to deliver one run.
pub struct Webhook<'a> {
    pub client: &'a reqwest::Client,
    /// Checks the URL's address again before every delivery (DNS may have changed).
    pub admission: &'a Admission,
    pub url: &'a str,
    pub secret: &'a WebhookSecret,
    pub timeout: Duration,
    /// `<public_url>/api/v1/rollouts/{id}/tasks/{task}/callback`.
    pub callback_url: String,
    pub callback_token: CallbackToken,
    /// To log the deliveries once one is accepted, under the run's callback hash.
    pub store: &'a Store,
}

#[derive(Serialize)]
struct Payload<'a> {
    rollout_id: &'a str,
    task_id: &'a str,
    artifact: &'a str,
    environment: &'a str,
    target: &'a str,
    target_config: &'a Map<String, Value>,
    version: i64,
    step: &'a str,
    attempt: u32,
    idempotency_key: &'a str,
    value_type: &'a str,
    content: &'a Value,
    callback_url: &'a str,
    callback_token: &'a str,
}

/// The client every webhook delivery goes through (rollout tasks, queue checks): no redirects,
/// and addresses resolved through the admission policy. Without these settings the client would
/// follow redirects and resolve any address: failing to build it is an error, never a fallback
/// to defaults.
pub fn client(admission: &Arc<Admission>) -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10))
        .dns_resolver(admission.resolver())
        .build()
        .map_err(|e| anyhow::anyhow!("could not build the webhook client: {e}"))
}

/// `sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.
pub fn signature(secret: &str, timestamp: u64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Whether a delivery that got this answer is tried again.
fn retried(status: reqwest::StatusCode) -> bool {
    status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS
}

/// Runs a `webhook` task: delivers it, then waits for its deadline. `stop` turning true ends
/// the run as stopped. A result reported through the callback is recorded there, and the
/// reconciler then drops this run.
pub async fn run_webhook(webhook: Webhook<'_>, context: &TaskContext, mut stop: watch::Receiver<bool>) -> RunEnd {
    let deadline = Instant::now() + webhook.timeout;
    let hash = webhook.callback_token.hash();
    // How each delivery went, in the task's log as it happens. Refused once the receiver has
    // reported a result (it may do so before its 2xx reaches us): nothing is lost then.
    let (store, hash) = (webhook.store, &hash);
    let note = |text: String| async move {
        let _ = store.webhook_progress(&context.task_id, hash, &text).await;
    };
    let failed = |error: String| {
        RunEnd::Finished(TaskOutcome { succeeded: false, exit_code: None, error: Some(error), log: String::new() })
    };
    let stopped = || RunEnd::Stopped { log: String::new() };
    let body = match serde_json::to_vec(&Payload {
        rollout_id: &context.rollout_id,
        task_id: &context.task_id,
        artifact: &context.artifact,
        environment: &context.environment,
        target: &context.target,
        target_config: &context.target_config,
        version: context.version,
        step: &context.step,
        attempt: context.attempt,
        idempotency_key: &context.idempotency_key,
        value_type: &context.value_type,
        content: &context.content,
        callback_url: &webhook.callback_url,
        callback_token: webhook.callback_token.expose(),
    }) {
        Ok(body) => body,
        Err(e) => return failed(format!("could not encode the payload: {e}")),
    };
    let target = Target {
        client: webhook.client,
        admission: webhook.admission,
        url: webhook.url,
        secret: webhook.secret,
        timeout: webhook.timeout,
        idempotency_key: &context.idempotency_key,
    };
    match deliver(&target, &body, deadline, note, &mut stop).await {
        Ok(()) => {}
        Err(Undelivered::Failed(error)) => return failed(error),
        Err(Undelivered::Stopped) => return stopped(),
    }
    tokio::select! {
        () = tokio::time::sleep_until(deadline) => failed(format!("no result within {} s", webhook.timeout.as_secs())),
        _ = stop.wait_for(|stop| *stop) => stopped(),
    }
}

/// Where one delivery goes and how it is signed.
pub struct Target<'a> {
    pub client: &'a reqwest::Client,
    /// Checks the URL's address again before every delivery (DNS may have changed).
    pub admission: &'a Admission,
    pub url: &'a str,
    pub secret: &'a WebhookSecret,
    pub timeout: Duration,
    pub idempotency_key: &'a str,
}

/// Why a payload was not delivered.
pub enum Undelivered {
    /// Refused (by the address policy or the receiver), or not accepted before the deadline.
    Failed(String),
    /// `stop` turned true.
    Stopped,
}

/// POSTs `body`, signed, until the receiver accepts it (2xx), retrying server errors and 429
/// with backoff until `deadline`; each attempt is reported to `note`.
pub async fn deliver<F, Fut>(
    webhook: &Target<'_>,
    body: &[u8],
    deadline: Instant,
    note: F,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), Undelivered>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let failed = |error: String| Err(Undelivered::Failed(error));
    let stopped = || Err(Undelivered::Stopped);
    let mut backoff = FIRST_BACKOFF;
    let mut delivery = 0_u32;
    loop {
        delivery = delivery.saturating_add(1);
        // Names are checked by the client's resolver as it connects; an address written in the
        // URL is never resolved, so it is checked here.
        if let Err(why) = webhook.admission.check_delivery_url(webhook.url) {
            note(format!("delivery {delivery}: refused by the address policy: {why}\n")).await;
            return failed(format!("the address policy refuses the webhook's URL: {why}"));
        }
        let timestamp =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |since| since.as_secs());
        let request = webhook
            .client
            .post(webhook.url)
            .timeout(ATTEMPT_TIMEOUT.min(deadline.saturating_duration_since(Instant::now())))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("Idempotency-Key", webhook.idempotency_key)
            .header("X-Cutover-Timestamp", timestamp.to_string())
            .header("X-Cutover-Signature", signature(webhook.secret.expose(), timestamp, body))
            .body(body.to_vec());
        let answer = tokio::select! {
            answer = request.send() => answer,
            () = tokio::time::sleep_until(deadline) => {
                return failed(format!("delivery not accepted within {} s", webhook.timeout.as_secs()));
            }
            _ = stop.wait_for(|stop| *stop) => return stopped(),
        };
        let why = match answer {
            Ok(response) if response.status().is_success() => {
                note(format!("delivery {delivery}: accepted ({})\n", response.status())).await;
                return Ok(());
            }
            Ok(response) if !retried(response.status()) => {
                let status = response.status();
                note(format!("delivery {delivery}: refused ({status})\n")).await;
                return failed(format!("the receiver refused the delivery: {status}"));
            }
            Ok(response) => response.status().to_string(),
            // Without the URL: the error is shown to API callers, the URL may carry a credential.
            Err(e) => e.without_url().to_string(),
        };
        let wait = backoff.min(deadline.saturating_duration_since(Instant::now()));
        note(format!("delivery {delivery}: {why}; retrying in {} ms\n", wait.as_millis())).await;
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|stop| *stop) => return stopped(),
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_the_hmac_of_the_timestamp_and_the_body() {
        // Computed independently: printf '1.{}' | openssl dgst -sha256 -hmac key
        assert_eq!(
            signature("key", 1, b"{}"),
            "sha256=1ba6b8171186efc613e8bcc0cbdab2748f24984d7c5a84faa2637afa0e40d224"
        );
        assert_ne!(signature("key", 1, b"{}"), signature("key", 2, b"{}"));
    }

    #[test]
    fn server_errors_and_429_are_retried_other_answers_are_not() {
        assert!(retried(reqwest::StatusCode::SERVICE_UNAVAILABLE));
        assert!(retried(reqwest::StatusCode::TOO_MANY_REQUESTS));
        assert!(!retried(reqwest::StatusCode::BAD_REQUEST));
        assert!(!retried(reqwest::StatusCode::FOUND));
    }
}
