//! The web UI, driven through the router without a socket or a browser: sessions, CSRF, roles,
//! and what each page shows. (The browser tests are in crates/cutover/tests/browser.)

mod artifacts;
mod pages;
mod pools;
mod previews;
mod queues;
mod screens;
mod sessions;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use cutover_domain::WorkspaceName;
use cutover_server::{AppState, ServerConfig, app};
use cutover_store::Store;
use cutover_store::testing::TestDb;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

pub const HOST: &str = "127.0.0.1:7300";
pub const ORIGIN: &str = "http://127.0.0.1:7300";

pub struct Ui {
    pub router: Router,
    pub store: Store,
    pub owner: String,
    _db: Option<TestDb>,
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

/// A browser signed in: its cookie and the CSRF token its pages carry.
pub struct Browser {
    pub cookie: String,
    pub csrf: String,
}

impl Ui {
    pub async fn new() -> Self {
        Self::with_config(ServerConfig::default(), false).await
    }

    /// With the server's configuration, and its engine (reconcilers) running when `engine`.
    pub async fn with_config(config: ServerConfig, engine: bool) -> Self {
        let db = TestDb::sqlite().await;
        let mut ui = Self::on_store(db.store.clone(), config, engine).await;
        ui._db = Some(db);
        ui
    }

    /// On a store of either engine (the contract tests'), with its engine running when `engine`.
    pub async fn on_store(store: Store, config: ServerConfig, engine: bool) -> Self {
        let made = store.bootstrap(&WorkspaceName::parse("default").unwrap()).await.unwrap().unwrap();
        let state = AppState::new(store.clone(), config);
        if engine {
            state.start_engine().unwrap();
        }
        Self { router: app(state), store, owner: made.secret.expose().to_owned(), _db: None }
    }

    pub async fn send(&self, request: Request<Body>) -> Answer {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        Answer { status, headers, body: String::from_utf8_lossy(&bytes).into_owned() }
    }

    /// An API call with a token, answering JSON.
    pub async fn api(&self, method: Method, path: &str, token: &str, body: Option<Value>) -> (StatusCode, Value) {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
            .unwrap();
        let answer = self.send(request).await;
        (answer.status, serde_json::from_str(&answer.body).unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str, browser: Option<&Browser>) -> Answer {
        let mut request = Request::builder().uri(path).header(header::HOST, HOST);
        if let Some(browser) = browser {
            request = request.header(header::COOKIE, format!("cutover_session={}", browser.cookie));
        }
        self.send(request.body(Body::empty()).unwrap()).await
    }

    /// A form post as a browser sends it: `Origin`, the cookie, urlencoded fields.
    pub async fn post(
        &self,
        path: &str,
        browser: Option<&Browser>,
        origin: Option<&str>,
        fields: &[(&str, &str)],
    ) -> Answer {
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(header::HOST, HOST)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(origin) = origin {
            request = request.header(header::ORIGIN, origin);
        }
        if let Some(browser) = browser {
            request = request.header(header::COOKIE, format!("cutover_session={}", browser.cookie));
        }
        let body = serde_urlencoded::to_string(fields).unwrap();
        self.send(request.body(Body::from(body)).unwrap()).await
    }

    /// Signs in with `token` and reads the CSRF token off the first page.
    pub async fn sign_in(&self, token: &str) -> Browser {
        let answer = self.post("/sign-in", None, Some(ORIGIN), &[("token", token)]).await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
        let set = answer.headers.get(header::SET_COOKIE).unwrap().to_str().unwrap();
        let cookie = set.split(';').next().unwrap().strip_prefix("cutover_session=").unwrap().to_owned();
        let page = self.get("/", Some(&Browser { cookie: cookie.clone(), csrf: String::new() })).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        let csrf = page.body.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
        Browser { cookie, csrf }
    }

    /// A token of `role`, optionally limited to `environments`.
    pub async fn token(&self, role: &str, environments: &[&str]) -> String {
        let (status, body) = self
            .api(
                Method::POST,
                "/api/v1/tokens",
                &self.owner,
                Some(json!({"name": role, "role": role, "environments": environments})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["secret"].as_str().unwrap().to_owned()
    }

    /// Environments staging and production (protected), artifact `prompts/welcome` (string)
    /// with versions 1 and 2; v1 live in production, v2 in staging.
    pub async fn world(&self) {
        for (name, protected) in [("staging", false), ("production", true)] {
            let (status, body) = self
                .api(
                    Method::POST,
                    "/api/v1/environments",
                    &self.owner,
                    Some(json!({"name": name, "protected": protected})),
                )
                .await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
        }
        let (status, body) = self
            .api(
                Method::POST,
                "/api/v1/artifacts",
                &self.owner,
                Some(json!({"key": "prompts/welcome", "value_type": "string", "kind": "prompt"})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        for (content, env) in [("Hello.\nBe brief.\n", "production"), ("Hello.\nBe very brief.\n", "staging")] {
            let (status, body) = self
                .api(
                    Method::POST,
                    "/api/v1/artifacts/prompts%2Fwelcome/versions",
                    &self.owner,
                    Some(json!({"content": content, "message": format!("for {env}"), "environments": [env]})),
                )
                .await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
        }
    }
}
