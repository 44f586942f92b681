//! What a client may ask the engine to run, and where it may make the server connect
//! (DESIGN rule 8): only the command executors the operator declared (by name, limited to some
//! workspaces if the operator says so), and webhooks to addresses the address policy allows,
//! checked when a rollout is created and again on every delivery. Webhook secrets are sealed
//! with the server's secret key before they reach the store.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use cutover_domain::DomainError;
use cutover_domain::net::AddressPolicy;
use cutover_domain::rollouts::{ExecutorRequest, ExecutorSpec, WebhookSecret};
use cutover_domain::secrets::{SealedSecret, SecretKey};

use crate::config::{ExecutorConfig, ServerConfig};

/// How long a webhook host's name may take to resolve.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// The operator's rules for what runs and where webhooks go.
pub struct Admission {
    executors: BTreeMap<String, ExecutorConfig>,
    policy: AddressPolicy,
    key: SecretKey,
}

impl Admission {
    /// From a configuration that [`ServerConfig::validate`] accepted. Without a `secret_key`
    /// (tests, or a server that was not started by [`crate::run`]), secrets are sealed with a
    /// key of this process alone.
    pub fn from_config(config: &ServerConfig) -> Self {
        let key = config.secret_key.as_deref().and_then(|key| SecretKey::parse(key).ok());
        Self {
            executors: config.executors.clone(),
            policy: config.address_policy().unwrap_or_default(),
            key: key.unwrap_or_else(SecretKey::generate),
        }
    }

    /// Turns a client's request into what is stored: a declared executor's name with a timeout
    /// within its ceiling, or a webhook to an allowed address with its secret sealed.
    pub async fn admit(&self, request: ExecutorRequest, workspace: &str) -> Result<ExecutorSpec, DomainError> {
        request.validate()?;
        match request {
            ExecutorRequest::Command { name, timeout_seconds } => {
                let declared = self.executor(&name, workspace).map_err(|e| DomainError::invalid("executor.name", e))?;
                let timeout_seconds = match timeout_seconds {
                    None => declared.default_timeout(),
                    Some(seconds) if seconds > declared.timeout_seconds => {
                        return Err(DomainError::invalid(
                            "executor.timeout_seconds",
                            format!("executor {name:?} allows at most {} seconds", declared.timeout_seconds),
                        ));
                    }
                    Some(seconds) => seconds,
                };
                Ok(ExecutorSpec::Command { executor: name, timeout_seconds })
            }
            ExecutorRequest::Webhook { url, secret, timeout_seconds } => {
                self.check_url(&url).await.map_err(|e| DomainError::invalid("executor.url", e))?;
                Ok(ExecutorSpec::Webhook { url, secret: self.key.seal(secret.expose()), timeout_seconds })
            }
            ExecutorRequest::Manual {} => Ok(ExecutorSpec::Manual {}),
        }
    }

    /// The declared executor `name`, if `workspace` may use it.
    pub fn executor(&self, name: &str, workspace: &str) -> Result<&ExecutorConfig, String> {
        if self.executors.is_empty() {
            return Err("this server declares no command executors: the operator declares them under \
                 [executors.<name>] in the server configuration (see `cutover config example`)"
                .to_owned());
        }
        match self.executors.get(name).filter(|declared| declared.allows_workspace(workspace)) {
            Some(declared) => Ok(declared),
            None => {
                let usable: Vec<&str> = self
                    .executors
                    .iter()
                    .filter(|(_, declared)| declared.allows_workspace(workspace))
                    .map(|(name, _)| name.as_str())
                    .collect();
                Err(if usable.is_empty() {
                    format!(
                        "no executor named {name:?} is declared for this workspace, and it may use none \
                         ([executors.<name>] in the server configuration)"
                    )
                } else {
                    format!(
                        "no executor named {name:?} is declared for this workspace; it may use: {}",
                        usable.join(", ")
                    )
                })
            }
        }
    }

    /// Encrypts a secret with the server's key.
    pub fn seal(&self, secret: &str) -> SealedSecret {
        self.key.seal(secret)
    }

    /// The secret a sealed one hides.
    pub fn open(&self, sealed: &SealedSecret) -> Result<WebhookSecret, String> {
        self.key.open(sealed).map(WebhookSecret::new)
    }

    /// Checks that `url`'s host is allowed: by name, or every address it resolves to.
    pub async fn check_url(&self, url: &str) -> Result<(), String> {
        match target(url)? {
            Target::Address(ip) => self.check_addresses(&ip.to_string(), &[ip]),
            Target::Name(host, _) if self.policy.allows_host(&host) => Ok(()),
            Target::Name(host, port) => {
                let addresses = resolve(&host, port).await?;
                self.check_addresses(&host, &addresses)
            }
        }
    }

    /// The check a delivery needs on top of the delivery client's resolver: an address written
    /// in the URL is never resolved, so it is checked here; a name is checked by the resolver
    /// as the client connects (resolving it here too would look it up twice per delivery).
    pub fn check_delivery_url(&self, url: &str) -> Result<(), String> {
        match target(url)? {
            Target::Address(ip) => self.check_addresses(&ip.to_string(), &[ip]),
            Target::Name(..) => Ok(()),
        }
    }

    fn check_addresses(&self, host: &str, addresses: &[IpAddr]) -> Result<(), String> {
        self.policy.check_resolved(host, addresses)
    }

    /// The resolver webhook deliveries use: it answers only addresses the policy allows, so a
    /// name that changed to a forbidden address since creation is refused at delivery.
    pub fn resolver(self: &Arc<Self>) -> Arc<PolicyResolver> {
        Arc::new(PolicyResolver { admission: self.clone() })
    }
}

/// Where a URL points: an address written in it, or a host name (lowercase) and port.
enum Target {
    Address(IpAddr),
    Name(String, u16),
}

fn target(url: &str) -> Result<Target, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("not a valid URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err("must be an http:// or https:// URL".into());
    }
    let host = parsed.host_str().ok_or("must name a host")?.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(Target::Address(ip));
    }
    Ok(Target::Name(host.to_ascii_lowercase(), parsed.port_or_known_default().unwrap_or(443)))
}

async fn resolve(host: &str, port: u16) -> Result<Vec<IpAddr>, String> {
    let lookup = tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((host, port)))
        .await
        .map_err(|_| format!("{host} did not resolve within {} s", RESOLVE_TIMEOUT.as_secs()))?
        .map_err(|e| format!("{host} does not resolve: {e}"))?;
    Ok(lookup.map(|address| address.ip()).collect())
}

/// reqwest's name resolution for webhook deliveries, through the address policy.
pub struct PolicyResolver {
    admission: Arc<Admission>,
}

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let admission = self.admission.clone();
        Box::pin(async move {
            let host = name.as_str().to_ascii_lowercase();
            let addresses =
                resolve(&host, 0).await.map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { e.into() })?;
            if !admission.policy.allows_host(&host) {
                admission
                    .check_addresses(&host, &addresses)
                    .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { e.into() })?;
            }
            let addresses: Box<dyn Iterator<Item = SocketAddr> + Send> =
                Box::new(addresses.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addresses)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(toml: &str) -> Admission {
        let config: ServerConfig = toml::from_str(toml).unwrap();
        config.validate().unwrap();
        Admission::from_config(&config)
    }

    fn command(name: &str, timeout_seconds: Option<u32>) -> ExecutorRequest {
        ExecutorRequest::Command { name: name.into(), timeout_seconds }
    }

    #[tokio::test]
    async fn without_declared_executors_commands_are_refused_naming_the_key() {
        let error = admission("").admit(command("deploy", None), "default").await.unwrap_err();
        assert_eq!(error.field(), "executor.name");
        assert!(error.to_string().contains("[executors.<name>]"), "{error}");
    }

    #[tokio::test]
    async fn a_declared_executor_is_named_with_a_timeout_within_its_ceiling() {
        let rules = admission(
            "[executors.deploy]\nprogram = [\"/bin/true\"]\ntimeout_seconds = 900\n\
             [executors.only-a]\nprogram = [\"/bin/true\"]\ntimeout_seconds = 30\nworkspaces = [\"team-a\"]\n",
        );
        assert_eq!(
            rules.admit(command("deploy", None), "default").await.unwrap(),
            ExecutorSpec::Command { executor: "deploy".into(), timeout_seconds: 600 }
        );
        assert_eq!(
            rules.admit(command("deploy", Some(900)), "default").await.unwrap(),
            ExecutorSpec::Command { executor: "deploy".into(), timeout_seconds: 900 }
        );
        let over = rules.admit(command("deploy", Some(901)), "default").await.unwrap_err();
        assert!(over.to_string().contains("at most 900"), "{over}");
        let elsewhere = rules.admit(command("only-a", None), "default").await.unwrap_err();
        assert!(elsewhere.to_string().contains("it may use: deploy"), "{elsewhere}");
        assert_eq!(
            rules.admit(command("only-a", None), "team-a").await.unwrap(),
            ExecutorSpec::Command { executor: "only-a".into(), timeout_seconds: 30 }
        );
    }

    #[tokio::test]
    async fn webhooks_to_loopback_are_refused_unless_allowed() {
        let webhook = |url: &str| ExecutorRequest::Webhook {
            url: url.into(),
            secret: WebhookSecret::new("s3cret-key"),
            timeout_seconds: 10,
        };
        let strict = admission("");
        for url in
            ["http://127.0.0.1:9/hook", "http://localhost:9/hook", "http://[::1]:9/hook", "http://[::ffff:127.0.0.1]/"]
        {
            let error = strict.admit(webhook(url), "default").await.unwrap_err();
            assert_eq!(error.field(), "executor.url", "{url}");
            assert!(error.to_string().contains("loopback"), "{url}: {error}");
        }
        let allowed = admission("webhook_allow = [\"127.0.0.1\"]");
        match allowed.admit(webhook("http://127.0.0.1:9/hook"), "default").await.unwrap() {
            ExecutorSpec::Webhook { secret, .. } => {
                assert!(secret.is_sealed());
                assert_eq!(allowed.open(&secret).unwrap().expose(), "s3cret-key");
            }
            other => panic!("{other:?}"),
        }
        assert!(allowed.admit(webhook("http://[::1]:9/hook"), "default").await.is_err(), "only what is listed");
    }

    #[test]
    fn a_delivery_checks_addresses_in_the_url_and_leaves_names_to_the_resolver() {
        let strict = admission("");
        assert!(strict.check_delivery_url("http://127.0.0.1:9/hook").unwrap_err().contains("loopback"));
        assert!(strict.check_delivery_url("http://[fd00:ec2::254]/").unwrap_err().contains("metadata"));
        assert!(strict.check_delivery_url("https://deploy.example/hook").is_ok(), "checked as it connects");
        assert!(strict.check_delivery_url("ftp://deploy.example/").is_err());
        assert!(admission("webhook_allow = [\"127.0.0.1\"]").check_delivery_url("http://127.0.0.1:9/").is_ok());
    }
}
