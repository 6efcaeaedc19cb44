//! Helpers shared by the facade's integration tests.
// Each test crate uses its own subset.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

pub(crate) mod server;

/// A fresh path in this test process's temp directory (removed if it was there).
pub(crate) fn temp_path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("baton-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let p = dir.join(name);
    let _ = std::fs::remove_file(&p);
    p
}

/// A temp file holding `body`.
pub(crate) fn temp_file(name: &str, body: &str) -> PathBuf {
    let p = temp_path(name);
    std::fs::write(&p, body).expect("write temp file");
    p
}

/// An example topology with absolute paths (its rules and fixtures), edited, to run from a temp
/// file. Each replacement must be found.
pub(crate) fn example(name: &str, replacements: &[(&str, &str)]) -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/topologies");
    let d = dir.to_str().expect("utf-8");
    let mut body = std::fs::read_to_string(dir.join(name))
        .expect("example")
        .replace("rules: ", &format!("rules: {d}/"))
        .replace("path: fixtures/", &format!("path: {d}/fixtures/"));
    for (from, to) in replacements {
        assert!(body.contains(from), "{name} has `{from}`");
        body = body.replace(from, to);
    }
    body
}

/// The ops-loop example ticking in seconds instead of minutes (`every: 1m` → 1 s, the cron
/// `* * * * *` → every second), as a temp file.
pub(crate) fn fast_ops_loop() -> PathBuf {
    temp_file(
        "ops-loop.yaml",
        &example(
            "ops-loop.yaml",
            &[
                ("every: 1m", "every: 1s"),
                ("cron: \"* * * * *\"", "cron: \"* * * * * *\""),
            ],
        ),
    )
}

/// Whether the reference MCP servers are installed (`npm ci --prefix tests/mcp`). When
/// `BATON_REQUIRE_MCP` is set (CI), they must be.
pub(crate) fn mcp_servers_installed() -> bool {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mcp/node_modules/.bin");
    let ok =
        bin.join("mcp-server-filesystem").exists() && bin.join("mcp-server-everything").exists();
    assert!(
        ok || std::env::var_os("BATON_REQUIRE_MCP").is_none(),
        "the MCP servers are not installed: run `npm ci --prefix tests/mcp`"
    );
    if !ok {
        skip_notice("the MCP servers are not installed (npm ci --prefix tests/mcp)");
    }
    ok
}

/// Says that a test that needs a real server skipped its checks, where the person running the
/// tests sees it: written to stderr itself, not through `eprintln!`, which the test harness
/// captures and hides for a passing test.
pub(crate) fn skip_notice(why: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "SKIPPED (not failed): {why}");
}

/// Sends SIGTERM to `child` (as a service manager stopping it would) and waits for its output.
pub(crate) fn terminate(child: std::process::Child) -> std::process::Output {
    signal(child, "TERM")
}

/// Sends the signal `name` (`TERM`, `INT`) to `child` and waits for its output.
pub(crate) fn signal(child: std::process::Child, name: &str) -> std::process::Output {
    let sent = std::process::Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status();
    assert!(sent.is_ok_and(|s| s.success()), "SIG{name} sent");
    child.wait_with_output().expect("exits")
}

/// Waits (up to a minute) until process `pid` catches signal number `signo` — its handler is
/// installed, as Linux reports in `/proc/PID/status` (`SigCgt`) — instead of guessing with a
/// sleep how long start-up takes.
pub(crate) fn wait_until_catching(pid: u32, signo: u32) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let caught = status
            .lines()
            .find_map(|l| l.strip_prefix("SigCgt:"))
            .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
            .is_some_and(|mask| mask & (1 << (signo - 1)) != 0);
        if caught {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "process {pid} never installed a handler for signal {signo}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
