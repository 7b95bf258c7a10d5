//! A reference public credit platform receiver, for tests and demos (`examples/receiver.rs`): an
//! HTTPS server with mutual TLS that stores every share it receives, drops duplicates by
//! idempotency key, keeps every raw body (so tests can search all bytes a platform ever got), and
//! can be told to misbehave for a while: answer 503, hang, close connections, refuse with a 4xx,
//! refuse only shares whose record id contains a text, or answer slowly.
//!
//! It lives with the tests, not in the library: the end-to-end tests (`tests/common`) and the
//! examples include it by path and run it in-process on loopback, as a real server. The gateway
//! never uses it.
#![allow(dead_code)]

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// How the receiver answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Normal,
    /// 503 Service Unavailable.
    Unavailable,
    /// Never answer.
    Hang,
    /// Close the connection without an answer.
    Close,
    /// Answer this 4xx to everything.
    Refuse(u16),
    /// Answer 422 to any batch holding a share whose record id contains this text.
    RefuseRecord(String),
    /// Answer normally after this many milliseconds.
    Slow(u64),
}

/// One share as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub idempotency_key: String,
    pub kind: String,
    pub channel: String,
    pub record: Value,
    pub at: Instant,
}

#[derive(Default)]
struct State {
    /// When false (benchmarks), only corrections are kept in full; others are counted.
    keep_records: bool,
    count: usize,
    received: Vec<Received>,
    seen: HashSet<String>,
    bodies: Vec<Vec<u8>>,
    duplicates: usize,
    requests: usize,
    mode: Option<(Mode, Option<Instant>)>,
    /// When set, every request must carry `X-Credit-Signature` by one of these keys over its
    /// exact body; others get 401 and are counted in `bad_signatures`.
    verify_with: Option<credit_gateway::crypto::PublicKeyFile>,
    bad_signatures: usize,
}

/// A running receiver.
#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Receiver {
    /// Start on `listen`, with a server certificate and a CA for client certificates.
    pub async fn start(
        listen: &str,
        client_ca: &Path,
        cert: &Path,
        key: &Path,
    ) -> std::io::Result<Receiver> {
        Self::start_with(listen, client_ca, cert, key, true).await
    }

    /// `keep_records = false` keeps memory flat for millions of shares: only idempotency keys,
    /// counts and corrections are kept.
    pub async fn start_with(
        listen: &str,
        client_ca: &Path,
        cert: &Path,
        key: &Path,
        keep_records: bool,
    ) -> std::io::Result<Receiver> {
        let tls = credit_gateway::identity::tls::server_config(client_ca, cert, key)
            .map_err(std::io::Error::other)?;
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State {
            keep_records,
            ..State::default()
        }));
        let (stop, mut stop_rx) = tokio::sync::watch::channel(false);
        let acceptor = TlsAcceptor::from(tls);
        let st = state.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
                    _ = stop_rx.changed() => return,
                };
                let _ = stream.set_nodelay(true);
                let acceptor = acceptor.clone();
                let st = st.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let svc = hyper::service::service_fn(move |req| handle(st.clone(), req));
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        Ok(Receiver { addr, state, stop })
    }

    /// Require every delivery to be signed by one of these keys (the gateway's public key file).
    pub fn require_signatures(&self, keys: credit_gateway::crypto::PublicKeyFile) {
        self.lock().verify_with = Some(keys);
    }

    /// Requests refused because their signature was missing or did not match.
    pub fn bad_signatures(&self) -> usize {
        self.lock().bad_signatures
    }

    /// Misbehave in this way, for `duration` or until told otherwise.
    pub fn set_mode(&self, mode: Mode, duration: Option<Duration>) {
        let until = duration.map(|d| Instant::now() + d);
        self.lock().mode = Some((mode, until));
    }

    pub fn received(&self) -> Vec<Received> {
        self.lock().received.clone()
    }

    /// Every raw body ever posted, whatever the answer.
    pub fn bodies(&self) -> Vec<Vec<u8>> {
        self.lock().bodies.clone()
    }

    /// Distinct shares received.
    pub fn count(&self) -> usize {
        self.lock().count
    }

    pub fn duplicates(&self) -> usize {
        self.lock().duplicates
    }

    pub fn requests(&self) -> usize {
        self.lock().requests
    }

    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

type Resp = Response<Full<Bytes>>;

async fn handle(
    state: Arc<Mutex<State>>,
    req: Request<hyper::body::Incoming>,
) -> Result<Resp, std::io::Error> {
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let signature = req
        .headers()
        .get(credit_gateway::crypto::signed::DELIVERY_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let body = req
        .into_body()
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();
    let mode = {
        let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
        s.requests += 1;
        if let Some(keys) = &s.verify_with {
            let verdict = match &signature {
                None => Err("the request carries no X-Credit-Signature".to_string()),
                Some(h) => credit_gateway::crypto::signed::parse_header(h)
                    .and_then(|sig| credit_gateway::crypto::signed::verify_bytes(keys, &sig, &body))
                    .map_err(|e| e.to_string()),
            };
            if let Err(why) = verdict {
                s.bad_signatures += 1;
                return Ok(answer(
                    StatusCode::UNAUTHORIZED,
                    serde_json::json!({"error": {"code": "bad_signature", "message": why}}),
                ));
            }
        }
        if s.keep_records {
            s.bodies.push(body.to_vec());
        }
        match &s.mode {
            Some((_, Some(until))) if Instant::now() >= *until => {
                s.mode = None;
                Mode::Normal
            }
            Some((m, _)) => m.clone(),
            None => Mode::Normal,
        }
    };
    match mode {
        Mode::Unavailable => {
            return Ok(answer(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": "maintenance"}),
            ))
        }
        Mode::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return Ok(answer(StatusCode::SERVICE_UNAVAILABLE, json!({})));
        }
        Mode::Close => return Err(std::io::Error::other("closing the connection")),
        Mode::Refuse(status) => {
            return Ok(answer(
                StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
                json!({"error": "refused"}),
            ))
        }
        Mode::Slow(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
        Mode::Normal | Mode::RefuseRecord(_) => {}
    }
    let shares = if content_type.contains("xml") {
        parse_xml_shares(&body)
    } else {
        parse_json_shares(&body)
    };
    let Some(shares) = shares else {
        return Ok(answer(
            StatusCode::BAD_REQUEST,
            json!({"error": "unreadable batch"}),
        ));
    };
    if let Mode::RefuseRecord(text) = &mode {
        let hit = shares.iter().any(|s| {
            s.record
                .pointer("/source/record_id")
                .and_then(Value::as_str)
                .is_some_and(|id| id.contains(text.as_str()))
        });
        if hit {
            return Ok(answer(
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({"error": format!("record refused: contains {text}")}),
            ));
        }
    }
    let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
    let (mut accepted, mut duplicates) = (0, 0);
    for share in shares {
        if s.seen.insert(share.idempotency_key.clone()) {
            s.count += 1;
            if s.keep_records || share.kind == "correction" {
                s.received.push(share);
            }
            accepted += 1;
        } else {
            duplicates += 1;
        }
    }
    s.duplicates += duplicates;
    Ok(answer(
        StatusCode::OK,
        json!({"accepted": accepted, "duplicates": duplicates}),
    ))
}

fn parse_json_shares(body: &[u8]) -> Option<Vec<Received>> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let shares = v.get("shares")?.as_array()?;
    Some(
        shares
            .iter()
            .map(|s| Received {
                idempotency_key: s["idempotency_key"].as_str().unwrap_or("").to_string(),
                kind: s["kind"].as_str().unwrap_or("").to_string(),
                channel: s["channel"].as_str().unwrap_or("").to_string(),
                record: s["record"].clone(),
                at: Instant::now(),
            })
            .collect(),
    )
}

fn parse_xml_shares(body: &[u8]) -> Option<Vec<Received>> {
    let root = credit_gateway::mapping::source::parse_xml(body).ok()?;
    let body_el = root.children.iter().find(|c| c.name == "Body")?;
    Some(
        body_el
            .children
            .iter()
            .map(|r| {
                let attr = |n: &str| {
                    r.attributes
                        .iter()
                        .find(|(k, _)| k == n)
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default()
                };
                let fields: serde_json::Map<String, Value> = r
                    .children
                    .iter()
                    .map(|c| (c.name.clone(), Value::String(c.text.clone())))
                    .collect();
                Received {
                    idempotency_key: attr("IDEM"),
                    kind: attr("LX"),
                    channel: attr("QD"),
                    record: Value::Object(fields),
                    at: Instant::now(),
                }
            })
            .collect(),
    )
}

fn answer(status: StatusCode, body: Value) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(
        serde_json::to_vec(&body).unwrap_or_default(),
    )));
    *r.status_mut() = status;
    r
}
