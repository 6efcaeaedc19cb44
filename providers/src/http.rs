//! What both providers share: the HTTP client, error bodies, `Retry-After`, and reading a reply.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use baton_core::{ModelError, TokenUsage};
use futures::StreamExt;

/// The process's HTTP client: rustls with the ring provider, connection pooling, HTTP/2 when the
/// server offers it. No overall request timeout here: the agent's per-call timeout and the task's
/// deadline bound each call (a streaming reply may legitimately take minutes).
pub(crate) fn client(connect_timeout: Duration) -> Result<reqwest::Client, String> {
    static PROVIDER: OnceLock<()> = OnceLock::new();
    PROVIDER.get_or_init(|| {
        // Fails only if another provider was installed first, which is just as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .pool_idle_timeout(Duration::from_secs(90))
        .user_agent(concat!("baton/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// `Retry-After` (seconds or an HTTP date) or `retry-after-ms`.
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    if let Some(ms) = headers
        .get("retry-after-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
    {
        return Some(Duration::from_secs_f64(ms.max(0.0) / 1000.0));
    }
    let v = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = v.parse::<f64>() {
        return Some(Duration::from_secs_f64(secs.max(0.0)));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(
        at.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// An error reply: `{"error": {"type": ..., "message": ...}}` (both providers use this shape).
pub(crate) fn http_error(
    model: &str,
    status: u16,
    headers: &reqwest::header::HeaderMap,
    body: &str,
) -> ModelError {
    let parsed: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let err = parsed.as_ref().map(|v| v.get("error").unwrap_or(v));
    let kind = err
        .and_then(|e| e.get("type").or_else(|| e.get("code")))
        .and_then(|t| t.as_str())
        .unwrap_or("error")
        .to_string();
    let message = err
        .and_then(|e| e.get("message"))
        .and_then(|m| m.as_str())
        .map_or_else(
            || body.chars().take(200).collect::<String>(),
            str::to_string,
        );
    ModelError::Http {
        model: model.to_string(),
        status,
        kind,
        message,
        retry_after: retry_after(headers),
    }
}

pub(crate) fn transport(model: &str, e: &reqwest::Error, billed: Option<TokenUsage>) -> ModelError {
    // reqwest's Display may include the URL but never headers: credentials stay out of errors.
    let what = if e.is_connect() {
        "cannot connect"
    } else if e.is_timeout() {
        "timed out"
    } else if e.is_body() || e.is_decode() {
        "the reply was cut short"
    } else {
        "request failed"
    };
    ModelError::Transport {
        model: model.to_string(),
        message: format!("{what}: {e}"),
        billed,
    }
}

pub(crate) fn malformed(model: &str, message: impl Into<String>) -> ModelError {
    ModelError::Malformed {
        model: model.to_string(),
        message: message.into(),
    }
}

/// Sends `request` and returns the successful response, or the error reply as a [`ModelError`].
pub(crate) async fn send(
    model: &str,
    request: reqwest::RequestBuilder,
) -> Result<reqwest::Response, ModelError> {
    let response = request
        .send()
        .await
        .map_err(|e| transport(model, &e, None))?;
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let headers = response.headers().clone();
    let body = response.text().await.unwrap_or_default();
    Err(http_error(model, status.as_u16(), &headers, &body))
}

/// Reads a whole JSON body.
pub(crate) async fn json_body(
    model: &str,
    response: reqwest::Response,
) -> Result<serde_json::Value, ModelError> {
    let bytes = response
        .bytes()
        .await
        .map_err(|e| transport(model, &e, None))?;
    serde_json::from_slice(&bytes).map_err(|e| {
        let what = if e.is_eof() {
            "the reply is truncated JSON"
        } else {
            "the reply is not valid JSON"
        };
        malformed(model, format!("{what} ({e}) after {} bytes", bytes.len()))
    })
}

/// What a provider's stream parser does with each event.
pub(crate) trait EventSink {
    /// Handles one event; `Ok(true)` when it was the final one.
    fn event(&mut self, model: &str, event: crate::sse::Event) -> Result<bool, ModelError>;
    /// Usage reported so far (billed even if the stream then fails).
    fn billed(&self) -> Option<TokenUsage>;
}

/// Streams server-sent events into `sink` until its final event. A stream that ends or fails
/// before it is a transport error carrying what was billed so far.
pub(crate) async fn for_each_event(
    model: &str,
    response: reqwest::Response,
    sink: &mut impl EventSink,
) -> Result<(), ModelError> {
    let mut parser = crate::sse::Parser::default();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| transport(model, &e, sink.billed()))?;
        for event in parser.push(&chunk) {
            if sink.event(model, event)? {
                return Ok(());
            }
        }
    }
    Err(ModelError::Transport {
        model: model.to_string(),
        message: "the stream ended before its final event".into(),
        billed: sink.billed(),
    })
}

pub(crate) fn u64_at(v: &serde_json::Value, path: &[&str]) -> u64 {
    path.iter()
        .try_fold(v, |v, k| v.get(*k))
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0)
}
