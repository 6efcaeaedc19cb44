//! A fake provider for tests: an HTTP server on loopback that answers each request with the next
//! scripted reply, byte for byte, and records what it was sent. Replies are the providers' real
//! wire formats (the fixtures under `providers/tests/fixtures/`), and the server can misbehave the
//! way real ones do: error statuses with `Retry-After`, a stream cut short, a truncated body.
//!
//! Enabled with the `testing` feature.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One scripted reply.
#[derive(Clone, Debug)]
pub enum Reply {
    /// A complete response: status, extra headers, body.
    Full {
        /// HTTP status.
        status: u16,
        /// Extra headers (`Retry-After`, ...).
        headers: Vec<(String, String)>,
        /// Content type.
        content_type: String,
        /// Body.
        body: String,
    },
    /// The first `sent` bytes of `body`, announced with its full length, then the connection
    /// closes: a reply cut short.
    CutShort {
        /// Content type.
        content_type: String,
        /// The whole body it should have been.
        body: String,
        /// How much of it is sent.
        sent: usize,
    },
    /// Wait this long before answering with the next reply (for timeouts).
    Delay(Duration, Box<Reply>),
}

impl Reply {
    /// A JSON reply.
    pub fn json(status: u16, body: impl Into<String>) -> Reply {
        Reply::Full {
            status,
            headers: Vec::new(),
            content_type: "application/json".into(),
            body: body.into(),
        }
    }

    /// A server-sent-event stream (the body as recorded).
    pub fn sse(body: impl Into<String>) -> Reply {
        Reply::Full {
            status: 200,
            headers: Vec::new(),
            content_type: "text/event-stream".into(),
            body: body.into(),
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Reply {
        if let Reply::Full { headers, .. } = &mut self {
            headers.push((name.to_string(), value.to_string()));
        }
        self
    }
}

/// A request the server received.
#[derive(Clone, Debug)]
pub struct Received {
    /// `POST /v1/chat/completions`
    pub request_line: String,
    /// Lower-cased header names with their values.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: String,
    /// When it arrived.
    pub at: tokio::time::Instant,
}

impl Received {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_default()
    }
}

/// The fake provider.
#[derive(Clone)]
pub struct FakeServer {
    addr: SocketAddr,
    replies: Arc<Mutex<VecDeque<Reply>>>,
    received: Arc<Mutex<Vec<Received>>>,
}

impl FakeServer {
    /// Starts a server that answers with `replies`, in order (then with 500s).
    ///
    /// # Panics
    /// If no loopback port can be bound (a broken test machine).
    pub async fn start(replies: impl IntoIterator<Item = Reply>) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let server = FakeServer {
            addr: listener.local_addr().expect("local addr"),
            replies: Arc::new(Mutex::new(replies.into_iter().collect())),
            received: Arc::new(Mutex::new(Vec::new())),
        };
        let s = server.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let s = s.clone();
                tokio::spawn(async move {
                    let _ = s.serve(stream).await;
                });
            }
        });
        server
    }

    /// The base URL (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What it received so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().map(|r| r.clone()).unwrap_or_default()
    }

    async fn serve(&self, mut stream: TcpStream) -> std::io::Result<()> {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let mut lines = head.split("\r\n");
        let request_line = lines.next().unwrap_or("").to_string();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let len: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        while buf.len() < head_end + len {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let body = String::from_utf8_lossy(&buf[head_end..]).to_string();
        if let Ok(mut r) = self.received.lock() {
            r.push(Received {
                request_line,
                headers,
                body,
                at: tokio::time::Instant::now(),
            });
        }
        let mut reply = self
            .replies
            .lock()
            .ok()
            .and_then(|mut r| r.pop_front())
            .unwrap_or_else(|| {
                Reply::json(
                    500,
                    r#"{"error":{"type":"server_error","message":"no more scripted replies"}}"#,
                )
            });
        while let Reply::Delay(d, next) = reply {
            tokio::time::sleep(d).await;
            reply = *next;
        }
        match reply {
            Reply::Full {
                status,
                headers,
                content_type,
                body,
            } => {
                let mut head = format!(
                    "HTTP/1.1 {status} {}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n",
                    reason(status),
                    body.len()
                );
                for (n, v) in headers {
                    head.push_str(&format!("{n}: {v}\r\n"));
                }
                head.push_str("\r\n");
                stream.write_all(head.as_bytes()).await?;
                stream.write_all(body.as_bytes()).await?;
            }
            Reply::CutShort {
                content_type,
                body,
                sent,
            } => {
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                stream.write_all(head.as_bytes()).await?;
                stream
                    .write_all(&body.as_bytes()[..sent.min(body.len())])
                    .await?;
                stream.flush().await?;
            }
            Reply::Delay(..) => {}
        }
        stream.shutdown().await
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        529 => "Overloaded",
        _ => "Status",
    }
}

/// For tests of the embedded model: the fetched model file (`scripts/fetch-local-model.sh`), or
/// `None` after printing why the test is skipped. With `BATON_REQUIRE_LOCAL=1` (CI) a missing
/// model fails the test instead of skipping it.
///
/// # Panics
/// When `BATON_REQUIRE_LOCAL=1` and the model is missing.
#[cfg(feature = "local")]
pub fn local_model_or_skip() -> Option<std::path::PathBuf> {
    let path = crate::local::fetched_model_path();
    if path.is_file() {
        return Some(path);
    }
    assert!(
        std::env::var("BATON_REQUIRE_LOCAL").as_deref() != Ok("1"),
        "BATON_REQUIRE_LOCAL=1 but the model `{}` is missing: run scripts/fetch-local-model.sh",
        path.display()
    );
    eprintln!(
        "skipped: the local model `{}` is missing (run scripts/fetch-local-model.sh)",
        path.display()
    );
    None
}
