//! `baton run --push-metrics URL`: a run's final metrics, pushed to a Prometheus Pushgateway
//! when it ends — the Prometheus way for batch jobs, which end before any scrape sees them.

use std::time::Duration;

use anyhow::Context;
use base64::Engine as _;
use metrics_exporter_prometheus::PrometheusHandle;

/// The host's name, the default `instance` label (`baton` when it cannot be read).
pub(crate) fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "baton".into())
}

/// PUTs the exposition to the Pushgateway's group of job `baton`, `topology` and `instance`
/// (replacing that group's previous push: each run's are its final totals). Returns the URL.
///
/// # Errors
/// When the gateway cannot be reached in 10 s, or refuses the push (its answer is given).
pub(crate) async fn push(
    url: &str,
    topology: &str,
    instance: &str,
    handle: &PrometheusHandle,
) -> anyhow::Result<String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Label values base64url-encoded (`label@base64/...`): slashes and any other text are safe.
    let b64 = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    let target = format!(
        "{}/metrics/job/baton/topology@base64/{}/instance@base64/{}",
        url.trim_end_matches('/'),
        b64(topology),
        b64(instance)
    );
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .context("building the HTTP client")?;
    let response = client
        .put(&target)
        .header(
            reqwest::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )
        .body(baton::metrics::render(handle))
        .send()
        .await
        .with_context(|| format!("PUT {target}"))?;
    let status = response.status();
    if !status.is_success() {
        let said = response.text().await.unwrap_or_default();
        anyhow::bail!(
            "the Pushgateway answered {status}: {}",
            said.chars().take(500).collect::<String>()
        );
    }
    Ok(target)
}
