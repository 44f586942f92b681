//! Benchmark: the live matrix page (`GET /`) for 1,000 artifacts × 20 environments, rendered on
//! the server through the whole router (session lookup, store reads, the resolve view, the
//! template), without a socket. SQLite in a temporary directory.
//!
//!     cargo run --release -p cutover-server --example ui_matrix [ARTIFACTS] [ENVIRONMENTS] [ROUNDS]
//!
//! Prints p50, p90 and the largest of ROUNDS renders; docs/benchmarks.md records the figures.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use cutover_domain::{ArtifactKey, DeploymentTargets, EnvironmentName, ValueType, WorkspaceName};
use cutover_server::{AppState, ServerConfig, app};
use cutover_store::{ConnectOptions, NewArtifact, NewEnvironment, PinAuthority, Publish, Store};
use http_body_util::BodyExt;
use tower::ServiceExt;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<usize>());
    let artifacts = args.next().transpose()?.unwrap_or(1000);
    let environments = args.next().transpose()?.unwrap_or(20);
    let rounds = args.next().transpose()?.unwrap_or(50);

    let dir = tempfile::tempdir()?;
    let store =
        Store::connect(&format!("sqlite://{}/bench.db", dir.path().display()), &ConnectOptions::default()).await?;
    store.migrate().await?;
    let made = store.bootstrap(&WorkspaceName::parse("default")?).await?.expect("a fresh database");
    let (ws, actor) = (made.workspace.id.clone(), made.token.id.clone());
    let actor = cutover_store::Actor { token_id: actor, name: made.token.name.clone() };
    let started = Instant::now();
    let caller = cutover_store::Caller::new(&ws, &actor, &PinAuthority { owner: true, limited_to: Vec::new() });
    let names =
        (0..environments).map(|i| EnvironmentName::parse(&format!("env-{i:02}"))).collect::<Result<Vec<_>, _>>()?;
    for name in &names {
        let new = NewEnvironment {
            name: name.clone(),
            description: String::new(),
            protected: false,
            targets: DeploymentTargets::default(),
            position: None,
        };
        store.create_environment(&caller, &new, 1000).await?;
    }
    for i in 0..artifacts {
        let key = ArtifactKey::parse(&format!("prompts/p-{i:04}"))?;
        let new = NewArtifact {
            key: key.clone(),
            value_type: ValueType::String,
            kind: "prompt".into(),
            description: String::new(),
        };
        store.create_artifact(&caller, &new).await?;
        let publish = Publish {
            content: serde_json::json!(format!("prompt {i}")),
            message: "first",
            environments: &names,
            move_pins: false,
        };
        store.publish_version(&caller, &key, publish).await?;
    }
    println!("seeded {artifacts} artifacts × {environments} environments in {:.1?}", started.elapsed());

    let router = app(AppState::new(store, ServerConfig::default()));
    let sign_in = Request::builder()
        .method("POST")
        .uri("/sign-in")
        .header(header::HOST, "127.0.0.1:7300")
        .header(header::ORIGIN, "http://127.0.0.1:7300")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!("token={}", made.secret.expose())))?;
    let answer = router.clone().oneshot(sign_in).await?;
    let cookie = answer.headers()[header::SET_COOKIE].to_str()?.split(';').next().unwrap_or_default().to_owned();

    let mut times = Vec::with_capacity(rounds);
    let mut bytes = 0;
    for round in 0..rounds + 3 {
        let request = Request::builder().uri("/").header(header::COOKIE, &cookie).body(Body::empty())?;
        let started = Instant::now();
        let response = router.clone().oneshot(request).await?;
        assert_eq!(response.status(), StatusCode::OK);
        bytes = response.into_body().collect().await?.to_bytes().len();
        // The first renders warm the resolve view and the connection pool.
        if round >= 3 {
            times.push(started.elapsed());
        }
    }
    times.sort();
    let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "GET / ({bytes} bytes): p50 {:.1} ms, p90 {:.1} ms, max {:.1} ms over {rounds} renders",
        ms(at(0.5)),
        ms(at(0.9)),
        ms(*times.last().unwrap_or(&Duration::ZERO))
    );
    Ok(())
}
