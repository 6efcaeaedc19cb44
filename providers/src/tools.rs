//! `http_get`: a built-in tool that fetches a URL from allow-listed hosts only.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use baton_core::{Tool, ToolError};
use futures::StreamExt;
use serde::Deserialize;

/// Fetches a URL with GET, from the hosts it allows only (redirects included: one that leads to
/// another host is not followed). Bodies past `max_bytes` are cut; non-2xx statuses are errors
/// the model reads.
#[derive(Debug, Clone)]
pub struct HttpGet {
    name: String,
    allow: Arc<Vec<String>>,
    client: reqwest::Client,
    max_bytes: usize,
    description: String,
}

/// The arguments of [`HttpGet`].
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpGetArgs {
    /// The URL (`http` or `https`) on an allowed host.
    pub url: String,
}

/// Whether `host` (with `port`) is allowed: an entry is a host (`api.example.com`), a host and
/// port (`127.0.0.1:8080`), or a wildcard of subdomains (`*.example.com`).
fn allowed(allow: &[String], host: &str, port: Option<u16>) -> bool {
    allow.iter().any(|a| {
        if let Some(suffix) = a.strip_prefix("*.") {
            host.len() > suffix.len()
                && host.ends_with(suffix)
                && host[..host.len() - suffix.len()].ends_with('.')
        } else if let Some((h, p)) = a.rsplit_once(':')
            && p.parse::<u16>().is_ok()
        {
            h == host && p.parse::<u16>().ok() == port
        } else {
            a == host
        }
    })
}

impl HttpGet {
    /// A tool named `name` that may fetch from the hosts in `allow`, each request taking at most
    /// `timeout`.
    ///
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn new(
        name: impl Into<String>,
        allow: Vec<String>,
        timeout: Duration,
    ) -> Result<HttpGet, crate::ProviderError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let allow = Arc::new(allow);
        let for_redirects = Arc::clone(&allow);
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent(concat!("baton/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::custom(move |attempt| {
                let url = attempt.url();
                let ok = url
                    .host_str()
                    .is_some_and(|h| allowed(&for_redirects, h, url.port_or_known_default()));
                if attempt.previous().len() >= 5 {
                    attempt.error("too many redirects")
                } else if ok {
                    attempt.follow()
                } else {
                    attempt.stop()
                }
            }))
            .build()
            .map_err(crate::ProviderError::Client)?;
        let description = format!(
            "Fetch a URL with GET and read the response body. Allowed hosts: {}.",
            allow.join(", ")
        );
        Ok(HttpGet {
            name: name.into(),
            allow,
            client,
            max_bytes: 1 << 20,
            description,
        })
    }
}

#[async_trait]
impl Tool for HttpGet {
    fn name(&self) -> &str {
        &self.name
    }
    fn description(&self) -> &str {
        &self.description
    }
    fn parameters(&self) -> serde_json::Value {
        baton_core::schema_for::<HttpGetArgs>()
    }
    async fn call(
        &self,
        _cx: &baton_core::ToolContext<'_>,
        args: serde_json::Value,
    ) -> Result<String, ToolError> {
        let args: HttpGetArgs = baton_core::parse_args(args)?;
        let url = reqwest::Url::parse(&args.url)
            .map_err(|e| ToolError::InvalidArguments(format!("`{}`: {e}", args.url)))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ToolError::InvalidArguments(format!(
                "`{}`: only http and https URLs",
                args.url
            )));
        }
        let host = url.host_str().unwrap_or_default();
        if !allowed(&self.allow, host, url.port_or_known_default()) {
            return Err(ToolError::Failed(format!(
                "`{host}` is not an allowed host (allowed: {})",
                self.allow.join(", ")
            )));
        }
        let resp = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| ToolError::Failed(format!("GET {}: {e}", args.url)))?;
        let status = resp.status();
        if status.is_redirection() {
            let to = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("?");
            return Err(ToolError::Failed(format!(
                "GET {} redirects to {to}, which is not an allowed host",
                args.url
            )));
        }
        let mut body = Vec::new();
        let mut stream = resp.bytes_stream();
        let mut cut = false;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| ToolError::Failed(format!("GET {}: {e}", args.url)))?;
            let room = self.max_bytes - body.len();
            if chunk.len() > room {
                body.extend_from_slice(&chunk[..room]);
                cut = true;
                break;
            }
            body.extend_from_slice(&chunk);
        }
        let mut text = String::from_utf8_lossy(&body).into_owned();
        if cut {
            text.push_str(&format!("\n[… cut at {} bytes]", self.max_bytes));
        }
        if status.is_success() {
            Ok(text)
        } else {
            Err(ToolError::Failed(format!(
                "GET {}: {status}: {text}",
                args.url
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_match_exactly_by_port_or_by_subdomain_wildcard() {
        let allow: Vec<String> = ["status.example.com", "127.0.0.1:8080", "*.internal.example"]
            .map(String::from)
            .into();
        assert!(allowed(&allow, "status.example.com", Some(443)));
        assert!(!allowed(&allow, "evil.status.example.com", Some(443)));
        assert!(!allowed(&allow, "status.example.com.evil.io", Some(443)));
        assert!(allowed(&allow, "127.0.0.1", Some(8080)));
        assert!(!allowed(&allow, "127.0.0.1", Some(8081)));
        assert!(allowed(&allow, "grafana.internal.example", Some(443)));
        assert!(!allowed(&allow, "internal.example", Some(443)));
        assert!(!allowed(&allow, "xinternal.example", Some(443)));
    }
}
