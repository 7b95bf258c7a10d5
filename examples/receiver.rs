//! A reference public credit platform for demos: `cargo run --example receiver -- --listen 127.0.0.1:9443`.
//!
//! It serves HTTPS with mutual TLS using the gateway's development certificates (`certs/`), stores
//! every share it receives (printing one line per share), drops duplicates by idempotency key, and
//! takes orders on a plain-HTTP control port:
//!
//! ```sh
//! curl -X POST 'http://127.0.0.1:9543/mode?set=503&for_ms=30000'   # 503 for 30 s
//! curl -X POST 'http://127.0.0.1:9543/mode?set=hang'                # never answer
//! curl -X POST 'http://127.0.0.1:9543/mode?set=close'               # close connections
//! curl -X POST 'http://127.0.0.1:9543/mode?set=refuse&status=422'   # refuse everything
//! curl -X POST 'http://127.0.0.1:9543/mode?set=normal'
//! curl 'http://127.0.0.1:9543/received'                             # what arrived, as JSON
//! ```
//!
//! With `--verify-keys gateway-keys.json` (from `credit-gateway keys public`) it checks every
//! delivery's `X-Credit-Signature` and answers 401 `bad_signature` when it does not match.

#[path = "../tests/support/receiver.rs"]
mod receiver;

use std::convert::Infallible;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use receiver::{Mode, Receiver};

#[derive(Parser)]
struct Args {
    /// HTTPS address the gateway delivers to.
    #[arg(long, default_value = "127.0.0.1:9443")]
    listen: String,
    /// Plain-HTTP control address (default: the listen port + 100).
    #[arg(long)]
    control: Option<String>,
    /// Folder with ca.pem, server.pem and server-key.pem.
    #[arg(long, default_value = "certs")]
    certs: PathBuf,
    /// The gateway's public key file (`credit-gateway keys public > gateway-keys.json`): every
    /// delivery must then carry a valid `X-Credit-Signature` over its body, or gets 401.
    #[arg(long)]
    verify_keys: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let receiver = Receiver::start(
        &args.listen,
        &args.certs.join("ca.pem"),
        &args.certs.join("server.pem"),
        &args.certs.join("server-key.pem"),
    )
    .await?;
    if let Some(path) = &args.verify_keys {
        receiver.require_signatures(credit_gateway::crypto::PublicKeyFile::read(path)?);
    }
    let control = args
        .control
        .unwrap_or_else(|| format!("127.0.0.1:{}", receiver.addr.port() + 100));
    let listener = tokio::net::TcpListener::bind(&control).await?;
    println!(
        "reference receiver: shares on https://{} control on http://{control}",
        receiver.addr
    );
    let printer = receiver.clone();
    tokio::spawn(async move {
        let mut shown = 0;
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let all = printer.received();
            for s in &all[shown..] {
                println!(
                    "{} {} {} {}",
                    s.kind,
                    s.channel,
                    s.idempotency_key,
                    s.record
                        .pointer("/source/record_id")
                        .and_then(|v| v.as_str())
                        .unwrap_or("")
                );
            }
            shown = all.len();
        }
    });
    loop {
        let (stream, _) = listener.accept().await?;
        let receiver = receiver.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let receiver = receiver.clone();
                async move { Ok::<_, Infallible>(control_request(&receiver, &req)) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn control_request(
    receiver: &Receiver,
    req: &Request<hyper::body::Incoming>,
) -> Response<Full<Bytes>> {
    let query: std::collections::HashMap<&str, &str> = req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .collect();
    let body = match req.uri().path() {
        "/mode" => {
            let duration = query
                .get("for_ms")
                .and_then(|v| v.parse().ok())
                .map(Duration::from_millis);
            let mode = match query.get("set").copied().unwrap_or("normal") {
                "503" => Mode::Unavailable,
                "hang" => Mode::Hang,
                "close" => Mode::Close,
                "refuse" => Mode::Refuse(
                    query
                        .get("status")
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(422),
                ),
                "slow" => Mode::Slow(query.get("ms").and_then(|s| s.parse().ok()).unwrap_or(500)),
                _ => Mode::Normal,
            };
            receiver.set_mode(mode.clone(), duration);
            format!("{{\"mode\": \"{mode:?}\"}}\n")
        }
        "/received" => {
            let shares: Vec<_> = receiver
                .received()
                .into_iter()
                .map(|s| serde_json::json!({"idempotency_key": s.idempotency_key, "kind": s.kind, "channel": s.channel, "record": s.record}))
                .collect();
            serde_json::json!({"received": shares, "duplicates": receiver.duplicates()}).to_string()
        }
        _ => "{\"error\": \"use /mode or /received\"}\n".to_string(),
    };
    Response::new(Full::new(Bytes::from(body)))
}
