//! The raw bound for the benchmark: a minimal server doing only what the gateway cannot avoid:
//! mutual TLS, reading the body, splitting the JSON array into records, one sled insert per record,
//! and the same flush-before-ack policy with group commit. `examples/loadgen.rs` drives it and the
//! gateway with the same load and prints gateway / bound.
//!
//! `cargo run --release --example bound -- --listen 127.0.0.1:0 --certs DIR --data DIR`

use std::path::PathBuf;

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::sync::{mpsc, oneshot};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    #[arg(long)]
    certs: PathBuf,
    #[arg(long)]
    data: PathBuf,
}

type Job = (Vec<Vec<u8>>, oneshot::Sender<()>);

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let tls = credit_gateway::identity::tls::server_config(
        &args.certs.join("ca.pem"),
        &args.certs.join("server.pem"),
        &args.certs.join("server-key.pem"),
    )?;
    let db = sled::Config::new()
        .path(&args.data)
        .mode(sled::Mode::HighThroughput)
        .open()?;
    let (tx, rx) = mpsc::channel::<Job>(1024);
    std::thread::spawn(move || writer(db, rx));
    let listener = tokio::net::TcpListener::bind(&args.listen).await?;
    println!("bound ready: api=https://{}", listener.local_addr()?);
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let acceptor = acceptor.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(stream).await else {
                return;
            };
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let tx = tx.clone();
                async move {
                    let body = req
                        .into_body()
                        .collect()
                        .await
                        .map(|b| b.to_bytes())
                        .unwrap_or_default();
                    let records: Vec<Vec<u8>> = match serde_json::from_slice::<
                        Vec<&serde_json::value::RawValue>,
                    >(&body)
                    {
                        Ok(r) => r.into_iter().map(|v| v.get().as_bytes().to_vec()).collect(),
                        Err(_) => return Ok::<_, std::convert::Infallible>(reply(400, "bad json")),
                    };
                    let n = records.len();
                    let (done, wait) = oneshot::channel();
                    if tx.send((records, done)).await.is_err() || wait.await.is_err() {
                        return Ok(reply(503, "writer gone"));
                    }
                    Ok(reply(
                        200,
                        &format!("{{\"accepted\": {n}, \"rejected\": []}}"),
                    ))
                }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), svc)
                .await;
        });
    }
}

/// Group commit: everything waiting shares one flush.
fn writer(db: sled::Db, mut rx: mpsc::Receiver<Job>) {
    let mut seq: u64 = 0;
    while let Some(first) = rx.blocking_recv() {
        let mut group = vec![first];
        while let Ok(job) = rx.try_recv() {
            group.push(job);
        }
        let mut batch = sled::Batch::default();
        for (records, _) in &group {
            for r in records {
                seq += 1;
                batch.insert(&seq.to_be_bytes(), r.as_slice());
            }
        }
        if db
            .apply_batch(batch)
            .and_then(|_| db.flush().map(|_| ()))
            .is_err()
        {
            continue;
        }
        for (_, done) in group {
            let _ = done.send(());
        }
    }
}

fn reply(status: u16, body: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    r
}
