//! The built-in tools through the runtime.

use super::*;
use baton_topologies::{PolicySpec, ToolKind};

/// The built-in `read_file` and `shell` from a topology, under the policy: the model reads a
/// note inside the root, then echoes it — a destructive `shell` call that must first run as
/// a dry run with the same arguments.
#[tokio::test]
async fn read_file_and_shell_under_dry_run_first() {
    let root = std::env::temp_dir().join(format!("baton-builtins-{}", std::process::id()));
    std::fs::create_dir_all(&root).expect("root");
    std::fs::write(root.join("note.txt"), "cache flushed").expect("note");
    let mut read = ToolSpec::builtin(ToolKind::ReadFile, &root);
    read.description = None;
    let mut shell = ToolSpec::builtin(ToolKind::Shell, &root);
    shell.path = None;
    shell.allow = Some(vec!["echo".into()]);
    let mut spec = TopologyBuilder::new("t")
        .model("m", dollar_per_mtok())
        .tool("read_file", read)
        .tool("shell", shell)
        .agent("ops", AgentSpec::new(["m"]).tools(["read_file", "shell"]))
        .build()
        .expect("valid")
        .spec()
        .clone();
    spec.policy = Some(PolicySpec {
        dry_run_first: Some(true),
        ..PolicySpec::default()
    });
    let t = Topology::from_spec(spec, std::path::Path::new(".")).expect("valid");
    let model = |dry_first: bool| {
        FnModel::new(move |r: &ModelRequest<'_>| {
            let last = r
                .messages
                .last()
                .map_or(String::new(), |m| m.content.clone());
            let note = r
                .messages
                .iter()
                .find(|m| m.content == "cache flushed")
                .map(|m| m.content.clone())
                .unwrap_or_default();
            let echo = |dry: bool| json!({"command": "echo", "args": [note], "dry_run": dry});
            Ok(match (r.step, dry_first) {
                (1, _) => call(r, "read_file", json!({"path": "note.txt"})),
                (2, true) => call(r, "shell", echo(true)),
                (2, false) | (3, true) => call(r, "shell", echo(false)),
                _ => text(r, &last),
            })
        })
    };
    for (dry_first, expect) in [
        (true, "cache flushed\n"),
        (false, "denied by policy (dry_run_first)"),
    ] {
        let rt = Runtime::builder(t.clone())
            .model("m", model(dry_first))
            .start()
            .await
            .expect("starts");
        let run = rt
            .submit("flush and say so", Budget::UNLIMITED)
            .await
            .expect("answered");
        rt.shutdown().await;
        assert!(
            run.result.text.starts_with(expect),
            "dry run first: {dry_first}: {}",
            run.result.text
        );
    }
    let _ = std::fs::remove_dir_all(&root);
}
/// The built-in `list_dir` from a topology: the model lists a folder inside the tool's root
/// and answers with what it saw; a folder outside the root is refused as an observation.
#[tokio::test]
async fn list_dir_lists_inside_its_root() {
    let root = std::env::temp_dir().join(format!("baton-list-{}", std::process::id()));
    std::fs::create_dir_all(root.join("inbox")).expect("root");
    std::fs::write(root.join("inbox/1.eml"), "urgent").expect("mail");
    let t = TopologyBuilder::new("t")
        .model("m", dollar_per_mtok())
        .tool("list_dir", ToolSpec::builtin(ToolKind::ListDir, &root))
        .agent("triage", AgentSpec::new(["m"]).tools(["list_dir"]))
        .build()
        .expect("valid");
    let rt = Runtime::builder(t)
        .model(
            "m",
            FnModel::new(|r: &ModelRequest<'_>| {
                Ok(match r.step {
                    1 => call(r, "list_dir", json!({"path": "inbox"})),
                    2 => call(r, "list_dir", json!({"path": "../.."})),
                    _ => {
                        let seen: Vec<String> = r
                            .messages
                            .iter()
                            .filter(|m| m.role == Role::Tool)
                            .map(|m| m.content.clone())
                            .collect();
                        text(r, &seen.join(" | "))
                    }
                })
            }),
        )
        .start()
        .await
        .expect("starts");
    let run = rt
        .submit("what is in the inbox?", Budget::UNLIMITED)
        .await
        .expect("runs");
    rt.shutdown().await;
    assert_eq!(run.result.outcome, Outcome::Completed);
    let (listed, refused) = run.result.text.split_once(" | ").expect("two observations");
    assert_eq!(listed, "1.eml  6 bytes");
    assert!(refused.contains("outside the root"), "{refused}");
    let _ = std::fs::remove_dir_all(&root);
}
