//! Delivery: one worker per destination platform takes shares from its outbox queue in order
//! (corrections first) and POSTs them in batches over mutual-TLS HTTPS.
//!
//! Policy (pingora-style: the error says whose fault and whether a retry helps):
//! - 2xx: the platform acknowledged the batch; its entries are removed and the delivery audited.
//! - timeouts, connection errors, 5xx, 408, 429: retried with exponential backoff and jitter
//!   (`sharing.retry_base_ms` doubling up to `retry_max_ms`), for as long as it takes. A platform
//!   that is down makes its queue grow, never the gateway fail; delivery resumes by itself.
//! - other 4xx: the platform refuses the content; a retry will not help. A refused batch is resent
//!   one share at a time to find the culprits, which move to the dead letters with the answer;
//!   `outbox replay` puts them back.
//!
//! File destinations (`kind = "file"`, see [`file`]) take the same path: a batch becomes a batch
//! file, and its feedback file answers each share: accepted is a 2xx for that share, rejected a
//! refusal (resent alone, then dead letter), rejected with `retry`, unanswered, or no feedback
//! within `feedback_timeout_ms` a failure that is retried. The transitions (acknowledge, isolate,
//! dead-letter, back off) are this module's one implementation for both transports.
//!
//! Ordering: one batch in flight per destination, taken in key order, so shares of one subject
//! reach a platform in the order they were accepted. Destinations run in parallel.
//! Each share carries its idempotency key (and the request an `Idempotency-Key` header for the
//! batch), so a platform drops what it already has after a crash between delivery and removal.

pub mod file;
pub mod format;
pub mod payload;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rand::Rng;
use serde_json::{json, Map};
use sha2::{Digest, Sha256};

use crate::audit::AuditEvent;
use crate::clock::{rfc3339, SharedClock};
use crate::config::{Config, DestinationConfig, SharingConfig, GATEWAY_CLIENT_CN};
use crate::exchange::ApplyJob;
use crate::exchange::CommitterHandle;
use crate::identity::tls;
use crate::outbox::{self, DeadLetter, Entry, Kind};
use crate::store::{to_bytes, Store};
use crate::telemetry::events;

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Why a delivery failed, and whether trying again can help.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("connection failed: {0}")]
    Connect(String),
    #[error("platform answered {status}")]
    Unavailable { status: u16, answer: String },
    #[error("platform refused with {status}")]
    Refused { status: u16, answer: String },
    #[error("cannot build the request: {0}")]
    Build(String),
    /// A file destination's folders cannot be written or read (the environment's or the
    /// operator's); retried.
    #[error("folder: {0}")]
    Folder(String),
    /// The gateway is stopping while a file waits for its feedback (resumed at the next start).
    #[error("stopping")]
    Stopping,
}

/// The last failed answer of each platform this node delivers to, for the operators' view of a
/// stuck queue (issue #27: the platform's answer used to be only in the log). Cleared by the next
/// successful delivery. Each node knows the platforms whose delivery lease it holds.
#[derive(Clone, Default)]
pub struct LastAnswers(Arc<std::sync::Mutex<std::collections::HashMap<String, LastAnswer>>>);

/// One platform's last failure.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LastAnswer {
    #[serde(with = "time::serde::rfc3339")]
    pub at: time::OffsetDateTime,
    /// The status and the start of the body, or why no answer came.
    pub answer: String,
    /// Failures in a row.
    pub consecutive: u64,
}

/// How much of a platform's answer the operators' view keeps.
const ANSWER_SHOWN: usize = 300;

impl LastAnswers {
    pub fn failed(
        &self,
        destination: &str,
        error: &DeliveryError,
        at: time::OffsetDateTime,
        consecutive: u64,
    ) {
        let answer = match error {
            // Status 0: a file destination's feedback, not an HTTP answer.
            DeliveryError::Unavailable { status: 0, answer }
            | DeliveryError::Refused { status: 0, answer } => {
                answer.chars().take(ANSWER_SHOWN).collect()
            }
            DeliveryError::Unavailable { status, answer }
            | DeliveryError::Refused { status, answer } => {
                let body: String = answer.chars().take(ANSWER_SHOWN).collect();
                format!("HTTP {status}: {body}")
            }
            other => other.to_string(),
        };
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.insert(
            destination.to_string(),
            LastAnswer {
                at,
                answer,
                consecutive,
            },
        );
    }

    pub fn recovered(&self, destination: &str) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(destination);
    }

    pub fn get(&self, destination: &str) -> Option<LastAnswer> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(destination)
            .cloned()
    }
}

impl DeliveryError {
    /// Retry for everything but a refusal of the content.
    pub fn retry(&self) -> bool {
        !matches!(self, Self::Refused { .. } | Self::Build(_))
    }
}

/// A delivery set-up problem: the operator's (certificates, URL, format).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("destination {id}: {message}")]
    Destination { id: String, message: String },
}

/// One destination's sender: HTTPS or a folder.
pub struct Destination {
    pub config: DestinationConfig,
    transport: Transport,
    /// Signs every request body (`X-Credit-Signature`), so the platform can prove what it was sent.
    keys: Option<crate::crypto::Keyring>,
}

enum Transport {
    /// Boxed: the client is large, and one destination is built once.
    Https(Box<Https>),
    File(file::FileOut),
}

struct Https {
    client: HttpsClient,
    uri: hyper::Uri,
    limiter: governor::DefaultDirectRateLimiter,
    format: Option<format::Outbound>,
}

impl Destination {
    pub fn new(
        config: &Config,
        dest: &DestinationConfig,
        formats: &format::Formats,
        keys: Option<crate::crypto::Keyring>,
    ) -> Result<Self, SetupError> {
        let err = |message: String| SetupError::Destination {
            id: dest.id.clone(),
            message,
        };
        if dest.is_file() {
            return Ok(Self {
                config: dest.clone(),
                transport: Transport::File(file::FileOut::new(dest).map_err(err)?),
                keys,
            });
        }
        let certs = &config.tls.certs_dir;
        let ca = dest.ca.clone().unwrap_or_else(|| certs.join("ca.pem"));
        let cert = dest
            .client_cert
            .clone()
            .unwrap_or_else(|| crate::identity::certs::client_cert_path(certs, GATEWAY_CLIENT_CN));
        let key = dest
            .client_key
            .clone()
            .unwrap_or_else(|| crate::identity::certs::client_key_path(certs, GATEWAY_CLIENT_CN));
        let tls = tls::client_config(&ca, &cert, &key).map_err(|e| err(e.to_string()))?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(Duration::from_secs(5)));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        let uri: hyper::Uri = dest.url.parse().map_err(|e| err(format!("url: {e}")))?;
        let quota = governor::Quota::per_second(
            std::num::NonZeroU32::new(dest.requests_per_second)
                .unwrap_or(std::num::NonZeroU32::MIN),
        );
        let format =
            match &dest.format {
                None => None,
                Some(id) => Some(formats.get(id).cloned().ok_or_else(|| {
                    err(format!("no outbound format {id:?} in mappings/outbound/"))
                })?),
            };
        Ok(Self {
            config: dest.clone(),
            transport: Transport::Https(Box::new(Https {
                client,
                uri,
                limiter: governor::RateLimiter::direct(quota),
                format,
            })),
            keys,
        })
    }

    /// The folders of a file destination; `None` for HTTPS.
    pub fn file(&self) -> Option<&file::FileOut> {
        match &self.transport {
            Transport::File(f) => Some(f),
            Transport::Https(_) => None,
        }
    }

    /// POST one batch; Ok when the platform acknowledged it (2xx). HTTPS destinations only.
    pub async fn send(
        &self,
        entries: &[Entry],
        timeout: Duration,
        now: &str,
    ) -> Result<(), DeliveryError> {
        let Transport::Https(https) = &self.transport else {
            return Err(DeliveryError::Build(
                "a file destination is not sent to over HTTPS".into(),
            ));
        };
        let keys: Vec<&str> = entries.iter().map(|e| e.idempotency_key.as_str()).collect();
        let batch_key = hex::encode(&Sha256::digest(keys.join(",").as_bytes())[..16]);
        let (body, content_type) = match &https.format {
            None => (
                canonical_body(&self.config.id, &batch_key, entries, now),
                "application/json",
            ),
            Some(f) => (
                f.render(&self.config, &batch_key, entries, now)
                    .map_err(DeliveryError::Build)?,
                "application/xml; charset=utf-8",
            ),
        };
        let mut req = hyper::Request::post(https.uri.clone())
            .header(hyper::header::CONTENT_TYPE, content_type)
            .header("idempotency-key", &batch_key);
        if let Some(keys) = &self.keys {
            let signature = crate::crypto::signed::header_value(keys.current().signer(), &body)
                .map_err(|e| DeliveryError::Build(format!("cannot sign the request: {e}")))?;
            req = req.header(crate::crypto::signed::DELIVERY_HEADER, signature);
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| DeliveryError::Build(e.to_string()))?;
        https.limiter.until_ready().await;
        let answer = async {
            let resp = https
                .client
                .request(req)
                .await
                .map_err(|e| DeliveryError::Connect(error_chain(&e)))?;
            let status = resp.status().as_u16();
            let body = Limited::new(resp.into_body(), 64 * 1024)
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            Ok::<_, DeliveryError>((
                status,
                String::from_utf8_lossy(&body)
                    .chars()
                    .take(2000)
                    .collect::<String>(),
            ))
        };
        let (status, answer) = tokio::time::timeout(timeout, answer)
            .await
            .map_err(|_| DeliveryError::Timeout(timeout))??;
        match status {
            200..=299 => Ok(()),
            408 | 425 | 429 | 500..=599 => Err(DeliveryError::Unavailable { status, answer }),
            _ => Err(DeliveryError::Refused { status, answer }),
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}

/// The default wire format: canonical JSON, records embedded verbatim.
fn canonical_body(dest: &str, batch_key: &str, entries: &[Entry], now: &str) -> Vec<u8> {
    #[derive(serde::Serialize)]
    struct Envelope<'a> {
        sender: &'a str,
        receiver: &'a str,
        message_id: &'a str,
        sent_at: &'a str,
        shares: Vec<Share<'a>>,
    }
    #[derive(serde::Serialize)]
    struct Share<'a> {
        idempotency_key: &'a str,
        kind: crate::outbox::Kind,
        channel: crate::disclosure::Channel,
        version: u32,
        #[serde(skip_serializing_if = "Option::is_none")]
        correction_id: Option<&'a str>,
        record: &'a serde_json::value::RawValue,
    }
    let envelope = Envelope {
        sender: "credit-gateway",
        receiver: dest,
        message_id: batch_key,
        sent_at: now,
        shares: entries
            .iter()
            .map(|e| Share {
                idempotency_key: &e.idempotency_key,
                kind: e.kind,
                channel: e.channel,
                version: e.version,
                correction_id: e.correction_id.as_deref(),
                record: e.body(),
            })
            .collect(),
    };
    serde_json::to_vec(&envelope).unwrap_or_default()
}

/// Exponential backoff with jitter.
struct Backoff {
    base: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    fn new(cfg: &SharingConfig) -> Self {
        let base = Duration::from_millis(cfg.retry_base_ms);
        Self {
            base,
            max: Duration::from_millis(cfg.retry_max_ms),
            current: base,
        }
    }

    fn next(&mut self) -> Duration {
        let jitter = rand::rng().random_range(0.5..1.5);
        let wait = self.current.mul_f64(jitter).min(self.max);
        self.current = (self.current * 2).min(self.max);
        wait
    }

    fn reset(&mut self) {
        self.current = self.base;
    }
}

/// Extra writes to commit with an acknowledgement, given the acknowledged entries and the time.
pub type OnDelivered = Arc<dyn Fn(&[Entry], &str) -> Vec<(String, Vec<u8>)> + Send + Sync>;

/// Extra writes to commit when a file destination picks up a batch file, given the entries in it
/// and the file's name (the corrections' pick-up times, GD Art. 31).
pub type OnPickedUp = Arc<dyn Fn(&[Entry], &str) -> Vec<(String, Vec<u8>)> + Send + Sync>;

/// One attempt's answer, share by share: `None` acknowledged, else why not. An HTTPS answer is
/// the same for every share of the batch; a feedback file answers each share.
type Answers = Vec<Option<DeliveryError>>;

/// Everything a worker needs.
#[derive(Clone)]
pub struct Worker {
    pub destination: Arc<Destination>,
    pub store: Store,
    pub committer: CommitterHandle,
    pub sharing: SharingConfig,
    pub clock: SharedClock,
    /// Called with the entries each successful delivery acknowledged (corrections tracking).
    pub on_delivered: Option<OnDelivered>,
    /// Called with the entries of a batch file when its platform picks it up (file destinations).
    pub on_picked_up: Option<OnPickedUp>,
    /// Where the platform's last failed answer is kept for the operators.
    pub last_answers: LastAnswers,
}

impl Worker {
    /// Deliver until `stop` flips; the batch in flight finishes (or times out) first. A file
    /// destination's file waiting for its feedback is left recorded and resumed at the next start.
    pub async fn run(self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let dest = self.destination.config.id.clone();
        let mut backoff = Backoff::new(&self.sharing);
        let timeout = Duration::from_millis(self.sharing.request_timeout_ms);
        let poll = Duration::from_millis(self.sharing.poll_interval_ms);
        let stats = tokio::spawn(publish_stats(
            self.store.clone(),
            dest.clone(),
            self.clock.clone(),
            stop.clone(),
        ));
        let mut failures: u64 = 0;
        let file = self.destination.file().cloned();
        if let Some(out) = &file {
            if !self
                .resume_files(out, &mut backoff, &mut failures, &mut stop)
                .await
            {
                stats.abort();
                return;
            }
        }
        // The acknowledgement of the batch sent last, committing while the next batch is read
        // and sent: at most one, and it ends before anything else touches the queue.
        let mut acking = Acking::default();
        // The batch after the one being sent, read and rebuilt meanwhile (dropped when the send
        // fails: the failed batch goes first again). HTTPS only: a file waits for its feedback
        // long enough that a batch read before would pass over corrections queued meanwhile.
        let mut next: Option<tokio::task::JoinHandle<Result<Rebuilt, String>>> = None;
        // File destinations: since when a batch smaller than `batch_size` has been waiting.
        let mut waiting_since: Option<Instant> = None;
        let size = self.destination.config.batch_size;
        loop {
            if *stop.borrow() {
                break;
            }
            let read = match next.take() {
                Some(prefetched) => prefetched.await.unwrap_or_else(|e| Err(e.to_string())),
                None => self.read_batch(size, acking.keys.clone()).await,
            };
            let batch = match read {
                Ok(rebuilt) => self.settle(rebuilt).await,
                Err(e) => {
                    tracing::error!(destination = %dest, error = %e, "cannot read the outbox");
                    sleep_or_stop(Duration::from_secs(1), &mut stop).await;
                    continue;
                }
            };
            if batch.is_empty() && acking.wait().await {
                continue;
            }
            if batch.is_empty() {
                waiting_since = None;
                let notified = self.committer.outbox_notify.notified();
                tokio::select! {
                    _ = notified => {},
                    _ = tokio::time::sleep(poll) => {},
                    _ = stop.changed() => {},
                }
                continue;
            }
            // A file holds `batch_size` shares, or fewer once the first has waited `batch_wait`
            // (urgent shares never wait: GD Art. 31), and one layout (cut where it changes).
            let batch = match &file {
                None => batch,
                Some(out) => {
                    let urgent = batch.iter().any(|(_, e)| e.kind != Kind::Share);
                    let since = *waiting_since.get_or_insert_with(Instant::now);
                    let waited = since.elapsed();
                    if batch.len() < size && !urgent && waited < out.batch_wait {
                        let notified = self.committer.outbox_notify.notified();
                        tokio::select! {
                            _ = notified => {},
                            _ = tokio::time::sleep((out.batch_wait - waited).min(poll.max(Duration::from_millis(10)))) => {},
                            _ = stop.changed() => {},
                        }
                        continue;
                    }
                    waiting_since = None;
                    let (_, n) = file::same_layout_prefix(&batch);
                    let mut batch = batch;
                    batch.truncate(n);
                    batch
                }
            };
            let entries: Vec<Entry> = batch.iter().map(|(_, e)| e.clone()).collect();
            let mut in_flight = acking.keys.clone();
            in_flight.extend(batch.iter().map(|(k, _)| k.clone()));
            // Not while the platform fails: the batch would be thrown away with the failure.
            if failures == 0 && file.is_none() {
                next = Some(tokio::spawn(self.read_batch(size, in_flight)));
            }
            let started = Instant::now();
            let now = rfc3339(self.clock.now());
            match self.attempt(&batch, timeout, &now, &mut stop).await {
                Ok(answers) if answers.iter().all(Option::is_none) => {
                    if failures > 0 {
                        events::delivery_recovered(&dest, failures);
                        self.last_answers.recovered(&dest);
                        failures = 0;
                    }
                    events::delivered(&dest, entries.len(), started.elapsed());
                    acking.wait().await;
                    acking.start(self.acknowledge_later(&batch, &now), &batch);
                    backoff.reset();
                }
                Ok(answers) => {
                    // A feedback file answered share by share.
                    next = None;
                    acking.wait().await;
                    match self
                        .conclude(
                            &batch,
                            answers,
                            started.elapsed(),
                            &now,
                            &mut backoff,
                            &mut stop,
                        )
                        .await
                    {
                        Ok(()) => {
                            if failures > 0 {
                                events::delivery_recovered(&dest, failures);
                                self.last_answers.recovered(&dest);
                                failures = 0;
                            }
                            backoff.reset();
                        }
                        Err(wait) => {
                            failures += 1;
                            sleep_or_stop(wait, &mut stop).await;
                        }
                    }
                }
                Err(DeliveryError::Stopping) => break,
                Err(e) if e.retry() => {
                    next = None;
                    acking.wait().await;
                    let wait = backoff.next();
                    failures += 1;
                    self.last_answers
                        .failed(&dest, &e, self.clock.now(), failures);
                    events::delivery_retry(&dest, &e.to_string(), wait, failures);
                    sleep_or_stop(wait, &mut stop).await;
                }
                Err(_) => {
                    next = None;
                    acking.wait().await;
                    // Refused: find the culprits one share at a time.
                    if let Err(wait) = self.isolate(&batch, timeout, &mut backoff, &mut stop).await
                    {
                        sleep_or_stop(wait, &mut stop).await;
                    }
                }
            }
        }
        acking.wait().await;
        stats.abort();
    }

    /// One attempt to deliver `batch`: an HTTPS request, or a batch file and its feedback.
    async fn attempt(
        &self,
        batch: &[(String, Entry)],
        timeout: Duration,
        now: &str,
        stop: &mut tokio::sync::watch::Receiver<bool>,
    ) -> Result<Answers, DeliveryError> {
        match self.destination.file() {
            None => {
                let entries: Vec<Entry> = batch.iter().map(|(_, e)| e.clone()).collect();
                self.destination
                    .send(&entries, timeout, now)
                    .await
                    .map(|()| batch.iter().map(|_| None).collect())
            }
            Some(out) => {
                let sent = self.write_file(out, batch).await?;
                self.await_file(out, sent, batch, stop).await
            }
        }
    }

    /// Apply an answer given share by share, through the same transitions as a whole-batch
    /// answer: acknowledged shares are acknowledged; refused ones are resent alone and then
    /// dead-lettered (as a refused HTTPS batch is); the others stay queued, and the wait before
    /// they are tried again is returned.
    async fn conclude(
        &self,
        batch: &[(String, Entry)],
        answers: Answers,
        elapsed: Duration,
        now: &str,
        backoff: &mut Backoff,
        stop: &mut tokio::sync::watch::Receiver<bool>,
    ) -> Result<(), Duration> {
        let dest = &self.destination.config.id;
        let timeout = Duration::from_millis(self.sharing.request_timeout_ms);
        let (mut acked, mut refused) = (Vec::new(), Vec::new());
        let mut passing: Option<DeliveryError> = None;
        for (item, answer) in batch.iter().zip(answers) {
            match answer {
                None => acked.push(item.clone()),
                Some(e) if e.retry() => {
                    passing.get_or_insert(e);
                }
                Some(_) => refused.push(item.clone()),
            }
        }
        if !acked.is_empty() {
            events::delivered(dest, acked.len(), elapsed);
            self.acknowledge(&acked, now).await;
        }
        if !refused.is_empty() {
            self.isolate(&refused, timeout, backoff, stop).await?;
        }
        if let Some(e) = passing {
            let wait = backoff.next();
            self.last_answers.failed(dest, &e, self.clock.now(), 1);
            events::delivery_retry(dest, &e.to_string(), wait, 1);
            return Err(wait);
        }
        Ok(())
    }

    /// Read the shares of the files written before a restart, wait for each one's feedback and
    /// apply it; `false` when the gateway is stopping meanwhile.
    async fn resume_files(
        &self,
        out: &file::FileOut,
        backoff: &mut Backoff,
        failures: &mut u64,
        stop: &mut tokio::sync::watch::Receiver<bool>,
    ) -> bool {
        let dest = self.destination.config.id.clone();
        let (store, prefix, o) = (
            self.store.clone(),
            crate::store::keys::SentFileKey::prefix(&dest),
            out.clone(),
        );
        let recorded = tokio::task::spawn_blocking(move || {
            let recorded: Vec<file::SentFile> = store
                .scan::<file::SentFile>(&prefix)
                .map_err(|e| e.to_string())?
                .into_iter()
                .map(|(_, s)| s)
                .collect();
            o.clean_temps(&recorded).map_err(|e| e.to_string())?;
            for sent in &recorded {
                // Step 3 again where a crash left it undone.
                o.publish(sent).map_err(|e| e.to_string())?;
            }
            Ok::<_, String>(recorded)
        })
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
        let recorded = match recorded {
            Ok(r) => r,
            Err(e) => {
                // Delivery goes on; the files stay recorded and are resumed at the next start.
                tracing::error!(destination = %dest, error = %e, "cannot resume the files written before the restart");
                return true;
            }
        };
        for sent in recorded {
            let (store, keys) = (
                self.store.clone(),
                sent.shares
                    .iter()
                    .map(|(k, _)| k.clone())
                    .collect::<Vec<_>>(),
            );
            let rebuilt = tokio::task::spawn_blocking(move || {
                let mut batch = Vec::new();
                for key in keys {
                    if let Ok(Some(bytes)) = store.get_raw(key.as_bytes()) {
                        if let Ok(entry) = crate::store::decode::<Entry>(key.as_bytes(), &bytes) {
                            batch.push((key, entry));
                        }
                    }
                }
                payload::rebuild_all(&store, batch)
            })
            .await
            .unwrap_or_default();
            let batch = self.settle(rebuilt).await;
            if batch.is_empty() {
                // Answered before the crash: only its record was left.
                self.forget(&sent, AuditEvent::FileAnswered).await;
                continue;
            }
            let now = rfc3339(self.clock.now());
            match self.await_file(out, sent, &batch, stop).await {
                Ok(answers) => {
                    if let Err(wait) = self
                        .conclude(&batch, answers, Duration::ZERO, &now, backoff, stop)
                        .await
                    {
                        *failures += 1;
                        sleep_or_stop(wait, stop).await;
                    }
                }
                Err(DeliveryError::Stopping) => return false,
                Err(e) => {
                    let wait = backoff.next();
                    *failures += 1;
                    self.last_answers
                        .failed(&dest, &e, self.clock.now(), *failures);
                    events::delivery_retry(&dest, &e.to_string(), wait, *failures);
                    sleep_or_stop(wait, stop).await;
                }
            }
            if *stop.borrow() {
                return false;
            }
        }
        true
    }

    /// Write one batch file (one layout) and record it; see `file` for the three steps.
    async fn write_file(
        &self,
        out: &file::FileOut,
        batch: &[(String, Entry)],
    ) -> Result<file::SentFile, DeliveryError> {
        let (layout, _) = file::same_layout_prefix(batch);
        let (store, o, items, now) = (
            self.store.clone(),
            out.clone(),
            batch.to_vec(),
            self.clock.now(),
        );
        let sent = tokio::task::spawn_blocking(move || {
            let seq = store
                .next_id()
                .map_err(|e| DeliveryError::Folder(format!("cannot number the file: {e}")))?;
            o.prepare(layout, &items, seq, now).map_err(|e| {
                if e.retry() {
                    DeliveryError::Folder(e.to_string())
                } else {
                    DeliveryError::Build(e.to_string())
                }
            })
        })
        .await
        .map_err(|e| DeliveryError::Folder(e.to_string()))??;
        let mut data = Map::new();
        data.insert("destination".into(), json!(sent.destination));
        data.insert("file".into(), json!(sent.file));
        data.insert("layout".into(), json!(sent.layout));
        data.insert("records".into(), json!(sent.records));
        data.insert("sha256".into(), json!(sent.sha256));
        data.insert("sm3".into(), json!(sent.sm3));
        data.insert(
            "idempotency_keys".into(),
            json!(sent.shares.iter().map(|(_, i)| i).collect::<Vec<_>>()),
        );
        if let Err(e) = self
            .committer
            .apply(
                ApplyJob::new(AuditEvent::FileWritten, data)
                    .writes(vec![(sent.key(), to_bytes(&sent))]),
            )
            .await
        {
            out.discard(&sent);
            // Worded as the storage failure it was before writes were typed.
            return Err(DeliveryError::Folder(format!(
                "the file was not recorded, so not published: {}",
                crate::store::StoreError::from(e)
            )));
        }
        let (o, s) = (out.clone(), sent.clone());
        let published = tokio::task::spawn_blocking(move || o.publish(&s))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()));
        if let Err(e) = published {
            let _ = out.take_back(&sent);
            self.forget(&sent, AuditEvent::FileWithdrawn).await;
            return Err(DeliveryError::Folder(e));
        }
        events::file_written(&sent.destination, &sent.file, sent.records, &sent.layout);
        Ok(sent)
    }

    /// Wait for the feedback to `sent`, recording its pick-up on the way; the answer for each
    /// share of `batch`. No feedback by the destination's `feedback_timeout_ms`: a failed attempt.
    async fn await_file(
        &self,
        out: &file::FileOut,
        mut sent: file::SentFile,
        batch: &[(String, Entry)],
        stop: &mut tokio::sync::watch::Receiver<bool>,
    ) -> Result<Answers, DeliveryError> {
        let dest = self.destination.config.id.clone();
        let poll = Duration::from_millis(self.sharing.poll_interval_ms.max(10));
        loop {
            if *stop.borrow() {
                return Err(DeliveryError::Stopping);
            }
            let (o, s) = (out.clone(), sent.clone());
            let seen = tokio::task::spawn_blocking(move || o.look(&s))
                .await
                .unwrap_or(file::Seen::Waiting);
            match seen {
                file::Seen::Answered(path) => {
                    if sent.picked_up_at.is_none() {
                        // Answered in place: taken at the latest now.
                        self.picked_up(&mut sent, batch).await;
                    }
                    let (o, s, p) = (out.clone(), sent.clone(), path.clone());
                    let read = tokio::task::spawn_blocking(move || o.read_feedback(&p, &s))
                        .await
                        .unwrap_or_else(|e| Err(e.to_string()));
                    let retired = {
                        let (o, p, invalid) = (out.clone(), path.clone(), read.is_err());
                        tokio::task::spawn_blocking(move || o.retire_feedback(&p, invalid)).await
                    };
                    if let Ok(Err(e)) = retired {
                        tracing::error!(destination = %dest, error = %e, "cannot move an applied feedback file aside");
                    }
                    let feedback = match read {
                        Ok(f) => f,
                        Err(why) => {
                            events::file_feedback_invalid(&dest, &sent.file, &why);
                            let _ = out.take_back(&sent);
                            self.forget(&sent, AuditEvent::FileFeedbackInvalid).await;
                            return Err(DeliveryError::Unavailable {
                                status: 0,
                                answer: format!(
                                    "the feedback to {} cannot be read: {why}",
                                    sent.file
                                ),
                            });
                        }
                    };
                    let answers = answers_of(&feedback, batch, &sent.file);
                    out.tidy(&sent);
                    let accepted = answers.iter().filter(|a| a.is_none()).count();
                    let refused = answers
                        .iter()
                        .filter(|a| a.as_ref().is_some_and(|e| !e.retry()))
                        .count();
                    events::file_answered(
                        &dest,
                        &sent.file,
                        accepted,
                        refused,
                        answers.len() - accepted - refused,
                    );
                    self.forget(&sent, AuditEvent::FileAnswered).await;
                    return Ok(answers);
                }
                file::Seen::PickedUp if sent.picked_up_at.is_none() => {
                    self.picked_up(&mut sent, batch).await;
                }
                _ => {}
            }
            let now = self.clock.now();
            if out.overdue(&sent, now) {
                if sent.picked_up_at.is_none() {
                    let (o, s) = (out.clone(), sent.clone());
                    if let Ok(Err(e)) = tokio::task::spawn_blocking(move || o.take_back(&s)).await {
                        tracing::error!(destination = %dest, error = %e, "cannot take an unanswered file back");
                    }
                }
                events::file_unanswered(&dest, &sent.file, sent.picked_up_at.is_some());
                self.forget(&sent, AuditEvent::FileUnanswered).await;
                return Err(DeliveryError::Timeout(out.feedback_timeout));
            }
            tokio::select! {
                _ = tokio::time::sleep(poll) => {},
                _ = stop.changed() => {},
            }
        }
    }

    /// Record that the platform took `sent` (once; audited), with the corrections it carries.
    async fn picked_up(&self, sent: &mut file::SentFile, batch: &[(String, Entry)]) {
        let at = self.clock.now();
        sent.picked_up_at = Some(at);
        let entries: Vec<Entry> = batch.iter().map(|(_, e)| e.clone()).collect();
        let mut writes = vec![(sent.key(), to_bytes(&*sent))];
        if let Some(f) = &self.on_picked_up {
            writes.extend(f(&entries, &sent.file));
        }
        let mut data = Map::new();
        data.insert("destination".into(), json!(sent.destination));
        data.insert("file".into(), json!(sent.file));
        data.insert("picked_up_at".into(), json!(rfc3339(at)));
        let corrections: Vec<&str> = entries
            .iter()
            .filter_map(|e| e.correction_id.as_deref())
            .collect();
        if !corrections.is_empty() {
            data.insert("corrections".into(), json!(corrections));
        }
        match self
            .committer
            .apply(ApplyJob::new(AuditEvent::FilePickedUp, data).writes(writes))
            .await
        {
            Ok(_) => events::file_picked_up(
                &sent.destination,
                &sent.file,
                (at - sent.written_at).as_seconds_f64().max(0.0),
            ),
            Err(e) => {
                // Recorded at the next look.
                tracing::error!(destination = %sent.destination, error = %e, "cannot record a file's pick-up");
                sent.picked_up_at = None;
            }
        }
    }

    /// Remove the record of a file that needs no more waiting for (audited as `kind`).
    async fn forget(&self, sent: &file::SentFile, kind: AuditEvent) {
        let mut data = Map::new();
        data.insert("destination".into(), json!(sent.destination));
        data.insert("file".into(), json!(sent.file));
        if let Err(e) = self
            .committer
            .apply(ApplyJob::new(kind, data).removes(vec![sent.key()]))
            .await
        {
            // Resumed at the next start: its feedback is gone by then, so it times out and its
            // shares still queued are written again.
            tracing::error!(destination = %sent.destination, error = %e, "cannot remove a file's record");
        }
    }

    /// The next `size` entries of the queue that are not in flight, with their payloads rebuilt.
    /// Reads of the archive block: off the runtime's threads.
    fn read_batch(
        &self,
        size: usize,
        in_flight: std::collections::HashSet<String>,
    ) -> impl std::future::Future<Output = Result<Rebuilt, String>> + Send + 'static {
        let (store, dest) = (self.store.clone(), self.destination.config.id.clone());
        async move {
            tokio::task::spawn_blocking(move || {
                // A fenced store may show shares of a group that never became durable: none of
                // them may reach a platform (the gateway is stopping to recover).
                if let Some(why) = store.fenced() {
                    return Err(format!("not read: the data directory is fenced ({why})"));
                }
                let batch = outbox::pending_except(&store, &dest, size, &in_flight)
                    .map_err(|e| e.to_string())?;
                Ok(payload::rebuild_all(&store, batch))
            })
            .await
            .unwrap_or_else(|e| Err(e.to_string()))
        }
    }

    /// Every share with its payload; a share whose payload cannot be rebuilt faithfully goes to
    /// the dead letters instead of the platform.
    async fn settle(&self, rebuilt: Rebuilt) -> Vec<(String, Entry)> {
        let mut ready = Vec::with_capacity(rebuilt.len());
        for (key, entry, outcome) in rebuilt {
            match outcome {
                Ok(()) => ready.push((key, entry)),
                Err(e) => {
                    let answer = format!("not sent: {e}");
                    self.dead_letter(&(key, entry), 0, answer).await;
                }
            }
        }
        ready
    }

    /// Send each share of a refused batch alone: acknowledged, or refused again and moved to the
    /// dead letters. A failure that may pass stops it (the wait before trying again).
    async fn isolate(
        &self,
        batch: &[(String, Entry)],
        timeout: Duration,
        backoff: &mut Backoff,
        stop: &mut tokio::sync::watch::Receiver<bool>,
    ) -> Result<(), Duration> {
        for item in batch {
            let now = rfc3339(self.clock.now());
            let answer = match self
                .attempt(std::slice::from_ref(item), timeout, &now, stop)
                .await
            {
                Ok(answers) => answers.into_iter().next().flatten(),
                Err(e) => Some(e),
            };
            match answer {
                None => self.acknowledge(std::slice::from_ref(item), &now).await,
                Some(DeliveryError::Refused { status, answer }) => {
                    self.dead_letter(item, status, answer).await
                }
                Some(DeliveryError::Stopping) => return Err(Duration::ZERO),
                Some(e) => {
                    let wait = backoff.next();
                    self.last_answers
                        .failed(&self.destination.config.id, &e, self.clock.now(), 1);
                    events::delivery_retry(&self.destination.config.id, &e.to_string(), wait, 1);
                    return Err(wait);
                }
            }
        }
        Ok(())
    }

    async fn acknowledge(&self, batch: &[(String, Entry)], now: &str) {
        self.acknowledge_later(batch, now).await
    }

    /// The acknowledgement of a delivered batch, as a future that owns what it needs.
    fn acknowledge_later(
        &self,
        batch: &[(String, Entry)],
        now: &str,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let entries: Vec<Entry> = batch.iter().map(|(_, e)| e.clone()).collect();
        let removes: Vec<String> = batch.iter().map(|(k, _)| k.clone()).collect();
        let writes = self
            .on_delivered
            .as_ref()
            .map(|f| f(&entries, now))
            .unwrap_or_default();
        let mut data = Map::new();
        data.insert("destination".into(), json!(self.destination.config.id));
        data.insert("count".into(), json!(entries.len()));
        let corrections: Vec<&str> = entries
            .iter()
            .filter_map(|e| e.correction_id.as_deref())
            .collect();
        if !corrections.is_empty() {
            data.insert("corrections_delivered".into(), json!(corrections));
        }
        data.insert(
            "idempotency_keys".into(),
            json!(entries
                .iter()
                .map(|e| e.idempotency_key.clone())
                .collect::<Vec<_>>()),
        );
        let committer = self.committer.clone();
        let destination = self.destination.config.id.clone();
        async move {
            if let Err(e) = committer
                .apply(
                    ApplyJob::new(AuditEvent::ShareDelivered, data)
                        .writes(writes)
                        .removes(removes),
                )
                .await
            {
                // The platform has them; they stay queued and will be sent again, and dropped
                // there as duplicates by their idempotency keys.
                tracing::error!(destination = %destination, error = %e, "delivered but not removed from the outbox");
            }
        }
    }

    async fn dead_letter(&self, item: &(String, Entry), status: u16, answer: String) {
        let (key, entry) = item;
        events::dead_lettered(&self.destination.config.id, &entry.record_id, status);
        // The dead letter keeps the sequence number it was queued with.
        let seq = <crate::store::keys::OutboxKey as crate::store::keys::Key>::decode(key)
            .map(|k| k.seq)
            .unwrap_or(0);
        let dead = DeadLetter {
            entry: entry.clone(),
            status,
            answer: answer.clone(),
            dead_at: self.clock.now(),
            from_key: outbox::display_key(key),
        };
        let mut data = Map::new();
        data.insert("destination".into(), json!(self.destination.config.id));
        data.insert("idempotency_key".into(), json!(entry.idempotency_key));
        data.insert("record_id".into(), json!(entry.record_id));
        data.insert("status".into(), json!(status));
        let writes = vec![(
            outbox::dead_key(&self.destination.config.id, seq),
            to_bytes(&dead),
        )];
        if let Err(e) = self
            .committer
            .apply(
                ApplyJob::new(AuditEvent::ShareDeadLettered, data)
                    .writes(writes)
                    .removes(vec![key.clone()]),
            )
            .await
        {
            tracing::error!(error = %e, "cannot move a refused share to the dead letters");
        }
    }
}

/// Each share's answer in a feedback file: accepted, rejected (refused: resent alone, then dead
/// letter), rejected with `retry` or not answered (a failed attempt: retried).
fn answers_of(
    feedback: &file::feedback::Feedback,
    batch: &[(String, Entry)],
    file: &str,
) -> Answers {
    use file::feedback::Verdict;
    batch
        .iter()
        .map(|(_, e)| match feedback.get(&e.idempotency_key) {
            Some(Verdict::Accepted) => None,
            Some(Verdict::Rejected {
                reason,
                retry: false,
            }) => Some(DeliveryError::Refused {
                status: 0,
                answer: format!("{file}: rejected: {reason}"),
            }),
            Some(Verdict::Rejected {
                reason,
                retry: true,
            }) => Some(DeliveryError::Unavailable {
                status: 0,
                answer: format!("{file}: rejected for now: {reason}"),
            }),
            None => Some(DeliveryError::Unavailable {
                status: 0,
                answer: format!("{file}: the feedback does not answer this share"),
            }),
        })
        .collect()
}

/// A batch read from the queue, each share with its rebuilt payload or why it has none.
type Rebuilt = Vec<(String, Entry, Result<(), payload::PayloadError>)>;

/// The acknowledgement committing in the background, with the outbox keys it removes (still in
/// the queue until it is durable, so the next read skips them).
#[derive(Default)]
struct Acking {
    keys: std::collections::HashSet<String>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Acking {
    fn start(
        &mut self,
        ack: impl std::future::Future<Output = ()> + Send + 'static,
        batch: &[(String, Entry)],
    ) {
        self.keys = batch.iter().map(|(k, _)| k.clone()).collect();
        self.task = Some(tokio::spawn(ack));
    }

    /// Wait for the acknowledgement in flight; whether there was one.
    async fn wait(&mut self) -> bool {
        let Some(task) = self.task.take() else {
            return false;
        };
        let _ = task.await;
        self.keys.clear();
        true
    }
}

/// Publish one destination's queue depth, dead letters and oldest pending age every 30 s.
/// Counting walks the queue (seconds with a million shares waiting), so it runs on a blocking
/// thread of its own: the delivery loop, and a correction waiting in it, never waits for it.
async fn publish_stats(
    store: Store,
    dest: String,
    clock: SharedClock,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    while !*stop.borrow() {
        let (store, id) = (store.clone(), dest.clone());
        if let Ok(Ok(s)) = tokio::task::spawn_blocking(move || outbox::stats(&store, &id)).await {
            let age = s
                .oldest_pending_unix
                .map(|t| (clock.now().unix_timestamp() - t).max(0) as f64)
                .unwrap_or(0.0);
            events::outbox_depth(&s.destination, s.pending, s.dead_letters, age);
        }
        sleep_or_stop(Duration::from_secs(30), &mut stop).await;
    }
}

async fn sleep_or_stop(wait: Duration, stop: &mut tokio::sync::watch::Receiver<bool>) {
    tokio::select! {
        _ = tokio::time::sleep(wait) => {},
        _ = stop.changed() => {},
    }
}
