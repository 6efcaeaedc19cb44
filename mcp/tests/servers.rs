//! Against real MCP servers from npm (`tests/mcp/`, installed by `.ci/run` with `npm ci`): the
//! reference "everything" server over stdio and over streamable HTTP, and the "filesystem" server.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use baton_core::Effect;
use baton_mcp::{McpServer, ServerConfig, Transport};
use serde_json::json;

/// The path of an installed server's executable, or `None` (the test is skipped, unless
/// `BATON_REQUIRE_MCP` is set, as in CI, where it fails).
fn server_bin(name: &str) -> Option<String> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/mcp/node_modules/.bin")
        .join(name);
    if p.exists() {
        return Some(p.to_string_lossy().into_owned());
    }
    assert!(
        std::env::var_os("BATON_REQUIRE_MCP").is_none(),
        "{} is not installed: run `npm ci --prefix tests/mcp`",
        p.display()
    );
    // Written to stderr itself, not through `eprintln!`: the test harness would swallow it.
    use std::io::Write as _;
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED (not failed): {name} is not installed (npm ci --prefix tests/mcp)"
    );
    None
}

fn stdio(bin: String, args: &[&str]) -> Transport {
    Transport::Stdio {
        command: bin,
        args: args.iter().map(|a| (*a).to_string()).collect(),
        env: BTreeMap::new(),
        cwd: None,
    }
}

#[tokio::test]
async fn everything_over_stdio_lists_and_calls_tools() {
    let Some(bin) = server_bin("mcp-server-everything") else {
        return;
    };
    let server = McpServer::connect(ServerConfig::new("everything", stdio(bin, &["stdio"])))
        .await
        .expect("connects");
    let listed: Vec<&str> = server.listed().collect();
    assert!(listed.contains(&"echo"), "{listed:?}");
    let tools = server.tools();
    let echo = tools
        .iter()
        .find(|t| t.name() == "everything__echo")
        .expect("echo is exposed as everything__echo");
    assert_eq!(echo.parameters()["properties"]["message"]["type"], "string");
    let out = echo
        .call(
            &baton_core::ToolContext::new("test", baton_core::TaskId(1)),
            json!({"message": "hello from baton"}),
        )
        .await
        .expect("echo answers");
    assert!(out.contains("hello from baton"), "{out}");
    // The server's own validation error comes back as a failure the model can read.
    let bad = echo
        .call(
            &baton_core::ToolContext::new("test", baton_core::TaskId(1)),
            json!({"wrong": 1}),
        )
        .await;
    assert!(bad.is_err(), "{bad:?}");
}

#[tokio::test]
async fn allow_list_effects_and_a_missing_tool() {
    let Some(bin) = server_bin("mcp-server-everything") else {
        return;
    };
    let mut config = ServerConfig::new("ev", stdio(bin.clone(), &["stdio"]));
    config.allow = Some(vec!["echo".into(), "get-sum".into()]);
    config.effects.insert("get-sum".into(), Effect::Write);
    let server = McpServer::connect(config).await.expect("connects");
    let tools = server.tools();
    let names: Vec<&str> = tools.iter().map(|t| t.name()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    let sum = tools
        .iter()
        .find(|t| t.name() == "ev__get-sum")
        .expect("sum");
    assert_eq!(sum.effect(), Effect::Write, "the topology's effect wins");
    let out = sum
        .call(
            &baton_core::ToolContext::new("test", baton_core::TaskId(1)),
            json!({"a": 2, "b": 40}),
        )
        .await
        .expect("adds");
    assert!(out.contains("42"), "{out}");

    let mut config = ServerConfig::new("ev", stdio(bin, &["stdio"]));
    config.allow = Some(vec!["launch_missiles".into()]);
    let e = McpServer::connect(config).await.expect_err("no such tool");
    assert!(
        e.to_string()
            .starts_with("MCP server `ev` has no tool `launch_missiles` (it has: "),
        "{e}"
    );
}

#[tokio::test]
async fn filesystem_server_reads_inside_its_root_only() {
    let Some(bin) = server_bin("mcp-server-filesystem") else {
        return;
    };
    let root = std::env::temp_dir().join(format!("baton-mcp-fs-{}", std::process::id()));
    std::fs::create_dir_all(&root).expect("root");
    std::fs::write(root.join("runbook.md"), "restart the cache first").expect("file");
    let root_s = root.to_string_lossy().into_owned();
    // Untrusted (the default), its `readOnlyHint` is a claim, not policy: destructive.
    let untrusted = McpServer::connect(ServerConfig::new("fs", stdio(bin.clone(), &[&root_s])))
        .await
        .expect("connects");
    for t in untrusted.tools() {
        assert_eq!(t.effect(), Effect::Destructive, "{}", t.name());
        assert!(!t.supports_dry_run(), "{}", t.name());
    }
    let mut trusted = ServerConfig::new("fs", stdio(bin, &[&root_s]));
    trusted.trust_annotations = true;
    let server = McpServer::connect(trusted).await.expect("connects");
    let tools = server.tools();
    let read = tools
        .iter()
        .find(|t| t.name() == "fs__read_text_file")
        .expect("read_text_file");
    assert_eq!(read.effect(), Effect::Read, "annotated read-only, trusted");
    let out = read
        .call(
            &baton_core::ToolContext::new("test", baton_core::TaskId(1)),
            json!({"path": root.join("runbook.md")}),
        )
        .await
        .expect("reads");
    assert_eq!(out, "restart the cache first");
    let outside = read
        .call(
            &baton_core::ToolContext::new("test", baton_core::TaskId(1)),
            json!({"path": "/etc/passwd"}),
        )
        .await;
    assert!(outside.is_err(), "outside the root: {outside:?}");
    let write = tools
        .iter()
        .find(|t| t.name() == "fs__write_file")
        .expect("write_file");
    assert_ne!(write.effect(), Effect::Read);
    let _ = std::fs::remove_dir_all(&root);
}

/// A stdio server killed with SIGKILL is started again on the next call, within its intensity;
/// past it, the server is given up and calls say why.
#[tokio::test]
async fn a_killed_stdio_server_is_restarted_then_given_up() {
    let Some(bin) = server_bin("mcp-server-everything") else {
        return;
    };
    let mut config = ServerConfig::new("everything", stdio(bin, &["stdio"]));
    config.max_restarts = 1;
    let server = McpServer::connect(config).await.expect("connects");
    let tools = server.tools();
    let echo = tools
        .iter()
        .find(|t| t.name() == "everything__echo")
        .expect("echo");
    let kill = |pid: u32| {
        let ok = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .expect("kill runs")
            .success();
        assert!(ok, "killed {pid}");
    };
    let first = server.pid().await.expect("a stdio server has a pid");
    kill(first);
    // Wait for the session to notice the closed pipe.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let out = echo
        .call(
            &baton_core::ToolContext::new("test", baton_core::TaskId(1)),
            json!({"message": "again"}),
        )
        .await
        .expect("restarted");
    assert!(out.contains("again"), "{out}");
    assert_eq!(server.restarts(), 1);
    let second = server.pid().await.expect("pid");
    assert_ne!(first, second, "a new process");
    kill(second);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let e = echo
        .call(
            &baton_core::ToolContext::new("test", baton_core::TaskId(1)),
            json!({"message": "x"}),
        )
        .await
        .expect_err("given up");
    assert!(
        e.to_string().contains("is down: it died more than 1 times"),
        "{e}"
    );
}

#[tokio::test]
async fn everything_over_streamable_http() {
    let Some(bin) = server_bin("mcp-server-everything") else {
        return;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut child = tokio::process::Command::new(&bin)
        .arg("streamableHttp")
        .env("PORT", port.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("starts");
    // Wait until it listens.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "the server listens");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let transport = Transport::Http {
        url: format!("http://127.0.0.1:{port}/mcp"),
        headers: BTreeMap::new(),
    };
    let server = McpServer::connect(ServerConfig::new("remote", transport))
        .await
        .expect("connects over HTTP");
    let tools = server.tools();
    let echo = tools
        .iter()
        .find(|t| t.name() == "remote__echo")
        .expect("echo");
    let out = echo
        .call(
            &baton_core::ToolContext::new("test", baton_core::TaskId(1)),
            json!({"message": "over http"}),
        )
        .await
        .expect("echo");
    assert!(out.contains("over http"), "{out}");
    let _ = child.kill().await;
}
