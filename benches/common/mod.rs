//! What the benchmarks share.

/// Resident memory of this process, read from `/proc/self/statm` (0 where there is none).
#[allow(dead_code)]
pub(crate) fn rss() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// The ops-triage example at zero latency and without the approval wait, as a temp file named
/// `name`, with `extra` replacements on top.
#[allow(dead_code)]
pub(crate) fn ops_triage_file(name: &str, extra: &[(&str, &str)]) -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/topologies");
    let d = dir.to_str().expect("utf-8");
    let mut body = std::fs::read_to_string(dir.join("ops-triage.yaml"))
        .expect("the example")
        .replace("rules: ", &format!("rules: {d}/"))
        .replace("path: fixtures/", &format!("path: {d}/fixtures/"))
        .replace("latency: 40ms", "latency: 0ms")
        .replace("latency: 150ms", "latency: 0ms")
        .replace("approval: true", "approval: false");
    for (from, to) in extra {
        body = body.replace(from, to);
    }
    let path = std::env::temp_dir().join(format!("baton-bench-{name}-{}.yaml", std::process::id()));
    std::fs::write(&path, body).expect("written");
    path
}

/// The `p` quantile (0 to 1) of `sorted`.
#[allow(dead_code)]
pub(crate) fn percentile(sorted: &[std::time::Duration], p: f64) -> std::time::Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len().saturating_sub(1))]
}
