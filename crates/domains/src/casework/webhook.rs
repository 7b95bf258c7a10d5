//! The one alert webhook sender of the case trackers: a JSON POST over plain HTTP (e.g. a local
//! alert relay), 5 s timeout.
//!
//! Never does: retry (the log warning and the metrics remain), or log (the tracker logs a
//! failure as its domain always did, [`super::Family`]).

use std::time::Duration;

use serde_json::Value;

/// The one alert webhook sender: a JSON POST (plain HTTP, e.g. a local alert relay), 5 s
/// timeout, not retried.
#[derive(Debug, Clone, Default)]
pub struct Webhook {
    url: Option<String>,
}

impl Webhook {
    pub fn new(url: Option<String>) -> Self {
        Self { url }
    }

    /// POST `body`; `None` when no webhook is configured.
    pub async fn post(&self, body: &Value) -> Option<(&str, Result<(), String>)> {
        let url = self.url.as_deref()?;
        Some((url, post_json(url, body).await))
    }
}

/// POST one JSON alert (plain HTTP, 5 s timeout); not retried: the log warning and the metrics
/// remain.
pub async fn post_json(url: &str, body: &Value) -> Result<(), String> {
    let client: hyper_util::client::legacy::Client<_, http_body_util::Full<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    let req = hyper::Request::post(url)
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(
            body.to_string(),
        )))
        .map_err(|e| e.to_string())?;
    match tokio::time::timeout(Duration::from_secs(5), client.request(req)).await {
        Ok(Ok(resp)) if resp.status().is_success() => Ok(()),
        Ok(Ok(resp)) => Err(format!("answered {}", resp.status())),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer within 5 s".into()),
    }
}
