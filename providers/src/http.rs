//! What both providers share: the HTTP client, error bodies, `Retry-After`, and reading a reply.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use baton_core::{ModelError, TokenUsage};
use futures::StreamExt;

/// The process's HTTP client: rustls with the ring provider, connection pooling, HTTP/2 when the
/// server offers it. No overall request timeout here: the agent's per-call timeout and the task's
/// deadline bound each call (a streaming reply may legitimately take minutes).
pub(crate) fn client(connect_timeout: Duration) -> Result<reqwest::Client, crate::ProviderError> {
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
        .map_err(crate::ProviderError::Client)
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

/// The most bytes read of an error reply: enough for any real error, short of a hostile one.
pub(crate) const MAX_ERROR_BODY: usize = 64 * 1024;

/// The longest excerpt of a provider's message kept in an error (and so in the log, the report
/// and the audit trail).
pub(crate) const MAX_MESSAGE: usize = 500;

/// The most bytes read of a successful reply to a call allowed `max_tokens` completion tokens:
/// 256 KiB of envelope plus 1 KiB a token — generous (a token with its log-probabilities and
/// alternatives, JSON-escaped, in a stream chunk of its own, stays well under it), and still a
/// bound: a 50 MB "answer" to a 256-token call is refused.
pub(crate) fn reply_cap(max_tokens: u32) -> usize {
    (256usize << 10).saturating_add((max_tokens as usize).saturating_mul(1 << 10))
}

/// What a provider said, fit to show and store: every known secret scrubbed (a server may echo
/// the `Authorization` header), control characters replaced, and at most [`MAX_MESSAGE`]
/// characters kept.
pub(crate) fn said(text: &str) -> String {
    let text = crate::secret::scrub(text);
    let mut out: String = text
        .chars()
        .take(MAX_MESSAGE)
        .map(|c| if c.is_control() && c != '\n' { ' ' } else { c })
        .collect();
    let total = text.chars().count();
    if total > MAX_MESSAGE {
        out.push_str(&format!("… ({total} characters in all)"));
    }
    out
}

/// Reads at most `cap` bytes of `response`'s body: `Ok(Err(read))` when the body is longer (what
/// was read so far, for an excerpt).
async fn read_capped(
    model: &str,
    mut response: reqwest::Response,
    cap: usize,
) -> Result<Result<Vec<u8>, Vec<u8>>, ModelError> {
    let declared = response.content_length().unwrap_or(0);
    let mut body = Vec::with_capacity(usize::try_from(declared).unwrap_or(0).min(cap));
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| transport(model, &e, None))?
    {
        if body.len() + chunk.len() > cap {
            let room = cap - body.len();
            body.extend_from_slice(&chunk[..room]);
            return Ok(Err(body));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Ok(body))
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
        .unwrap_or(body);
    ModelError::Http {
        model: model.to_string(),
        status,
        kind: said(&kind),
        message: said(message),
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
        message: said(&format!("{what}: {e}")),
        billed,
    }
}

pub(crate) fn malformed(model: &str, message: impl Into<String>) -> ModelError {
    ModelError::Malformed {
        model: model.to_string(),
        message: message.into(),
        billed: None,
    }
}

/// [`malformed`], for a reply that reported `billed` usage before it was found unusable.
pub(crate) fn malformed_billed(
    model: &str,
    message: impl Into<String>,
    billed: Option<TokenUsage>,
) -> ModelError {
    ModelError::Malformed {
        model: model.to_string(),
        message: message.into(),
        billed,
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
    // An error body is read up to a cap (a hostile server's 50 MB message stays on the wire).
    let body = match read_capped(model, response, MAX_ERROR_BODY).await {
        Ok(Ok(b) | Err(b)) => b,
        Err(_) => Vec::new(),
    };
    Err(http_error(
        model,
        status.as_u16(),
        &headers,
        &String::from_utf8_lossy(&body),
    ))
}

/// Reads a whole JSON body of at most `cap` bytes (see [`reply_cap`]).
pub(crate) async fn json_body(
    model: &str,
    response: reqwest::Response,
    cap: usize,
) -> Result<serde_json::Value, ModelError> {
    let bytes = match read_capped(model, response, cap).await? {
        Ok(b) => b,
        Err(_) => {
            return Err(malformed(
                model,
                format!(
                    "the reply is larger than {cap} bytes, more than its max_tokens allow: not read further"
                ),
            ));
        }
    };
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
/// before it is a transport error carrying what was billed so far; a stream longer than `cap`
/// bytes (see [`reply_cap`]) is malformed, and is not read further.
pub(crate) async fn for_each_event(
    model: &str,
    response: reqwest::Response,
    sink: &mut impl EventSink,
    cap: usize,
) -> Result<(), ModelError> {
    let mut parser = crate::sse::Parser::new(cap);
    let mut stream = response.bytes_stream();
    let mut read = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| transport(model, &e, sink.billed()))?;
        read += chunk.len();
        let events = match parser.push(&chunk) {
            Ok(events) if read <= cap => events,
            _ => {
                return Err(malformed_billed(
                    model,
                    format!(
                        "the stream is longer than {cap} bytes, more than its max_tokens allow: not read further"
                    ),
                    sink.billed(),
                ));
            }
        };
        for event in events {
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
