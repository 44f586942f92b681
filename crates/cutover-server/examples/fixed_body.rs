//! The ceiling for resolve benchmarks: a minimal hyper server answering every request with a
//! fixed OFREP-sized JSON body, on the same runtime settings as `cutover serve`.
//!
//! `cargo run --release -p cutover-server --example fixed_body -- 127.0.0.1:7399`

use std::convert::Infallible;
use std::net::SocketAddr;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

const BODY: &str = r#"{"key":"flag-0500","value":"value 500","reason":"STATIC","variant":"v1","metadata":{"environment":"production","version":1,"revision":1000}}"#;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let address: SocketAddr =
        std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:7399".into()).parse().map_err(std::io::Error::other)?;
    let listener = tokio::net::TcpListener::bind(address).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            let service = service_fn(|_request: Request<hyper::body::Incoming>| async {
                let mut response = Response::new(Full::new(Bytes::from_static(BODY.as_bytes())));
                response
                    .headers_mut()
                    .insert("content-type", hyper::header::HeaderValue::from_static("application/json"));
                Ok::<_, Infallible>(response)
            });
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}
