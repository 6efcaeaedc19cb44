//! One tool call under the harness: schemas, timeouts, output caps, journal.

use super::*;
use baton_actors::{Event, Observer};
use std::sync::atomic::{AtomicU32, Ordering};

/// `logs`: takes `{service: string, lines?: integer}` and prints that many long lines, counting
/// its calls in `calls`.
fn logs_tool(calls: Arc<AtomicU32>) -> impl Tool {
    baton_core::testing::FnTool::new("logs", move |_, args| {
        calls.fetch_add(1, Ordering::SeqCst);
        let n = args["lines"].as_u64().unwrap_or(1);
        Ok((0..n)
            .map(|i| format!("line {i:05} {}", "x".repeat(90)))
            .collect::<Vec<_>>()
            .join("\n"))
    })
    .with_parameters(json!({
        "type": "object",
        "properties": {
            "service": {"type": "string"},
            "lines": {"type": "integer", "minimum": 1}
        },
        "required": ["service"],
        "additionalProperties": false
    }))
}

/// Calls `logs` with the arguments of its step, then answers with what it last saw.
fn model(steps: Vec<serde_json::Value>) -> impl Model {
    FnModel::new(move |r: &ModelRequest<'_>| {
        let last = r
            .messages
            .last()
            .map_or(String::new(), |m| m.content.clone());
        Ok(match steps.get(r.step as usize - 1) {
            Some(args) => call(r, "logs", args.clone()),
            None => text(r, &last),
        })
    })
}

async fn run(steps: Vec<serde_json::Value>, cap: Option<u32>) -> (String, u32) {
    let (text, calls, _) = run_saving(steps, cap).await;
    (text, calls)
}

/// [`run`], also returning the tokens of tool output the task had cut.
async fn run_saving(steps: Vec<serde_json::Value>, cap: Option<u32>) -> (String, u32, u64) {
    let mut logs = ToolSpec::custom();
    logs.max_output_tokens = cap;
    let t = TopologyBuilder::new("t")
        .model("m", dollar_per_mtok())
        .tool("logs", logs)
        .agent("ops", AgentSpec::new(["m"]).tools(["logs"]))
        .build()
        .expect("valid");
    let calls = Arc::new(AtomicU32::new(0));
    let rt = Runtime::builder(t)
        .model("m", model(steps))
        .tool(logs_tool(Arc::clone(&calls)))
        .start()
        .await
        .expect("starts");
    let run = rt
        .submit("read the logs", Budget::UNLIMITED)
        .await
        .expect("answered");
    rt.shutdown().await;
    let saved = run.account.snapshot().tool_tokens_saved;
    (run.result.text, calls.load(Ordering::SeqCst), saved)
}

/// Arguments that do not fit the schema never reach the tool: the model is told what is
/// wrong, with the schema, and its corrected call runs.
#[tokio::test]
async fn invalid_arguments_are_an_observation_the_model_can_correct() {
    let (seen, calls) = run(
        vec![json!({"svc": "checkout", "lines": 0}), json!({})],
        None,
    )
    .await;
    assert_eq!(calls, 0, "the tool never ran");
    assert!(
        seen.starts_with("error: invalid arguments for `logs`: "),
        "{seen}"
    );
    assert!(
        seen.contains("\"service\" is a required property"),
        "{seen}"
    );
    assert!(seen.contains("Its parameters: {"), "{seen}");
    let (seen, calls) = run(
        vec![
            json!({"service": 7}),
            json!({"service": "checkout", "lines": 2}),
        ],
        None,
    )
    .await;
    assert_eq!(calls, 1, "only the corrected call ran");
    assert!(seen.starts_with("line 00000"), "{seen}");
}

/// A tool that does not answer within its `timeout` is abandoned; the model is told, and
/// the task goes on (no task deadline is needed).
#[tokio::test]
async fn a_tool_past_its_timeout_is_abandoned() {
    let mut logs = ToolSpec::custom();
    logs.timeout = Some(Duration::from_millis(50));
    let t = TopologyBuilder::new("t")
        .model("m", dollar_per_mtok())
        .tool("logs", logs)
        .agent("ops", AgentSpec::new(["m"]).tools(["logs"]))
        .build()
        .expect("valid");
    let rt = Runtime::builder(t)
        .model("m", model(vec![json!({})]))
        .tool(
            baton_core::testing::FnTool::new("logs", |_, _| Ok(String::new()))
                .with_latency(Duration::MAX),
        )
        .start()
        .await
        .expect("starts");
    let run = rt
        .submit("read the logs", Budget::UNLIMITED)
        .await
        .expect("answered");
    rt.shutdown().await;
    assert_eq!(run.result.outcome, baton_core::Outcome::Completed);
    assert!(
        run.result
            .text
            .starts_with("error: tool `logs` did not finish in time (its timeout is 50ms"),
        "{}",
        run.result.text
    );
}

/// Long output is cut to the tool's allowance (head and tail kept) before the model sees
/// it, saying how much was cut.
#[tokio::test]
async fn long_output_is_cut_before_it_reenters_the_context() {
    // 200 lines of 101 characters: about 5,050 tokens; the allowance is 100 tokens.
    let (seen, _, saved) = run_saving(
        vec![json!({"service": "checkout", "lines": 200})],
        Some(100),
    )
    .await;
    // 200 × 101 characters and 199 newlines, 400 kept: the rest cut, four characters a
    // token, booked on the task's account.
    let cut: u64 = 200 * 101 + 199 - 400;
    assert_eq!(saved, cut.div_ceil(4), "{seen}");
    assert!(seen.starts_with("line 00000"), "the head is kept");
    assert!(seen.ends_with(&"x".repeat(90)), "the tail is kept");
    assert!(seen.contains(" 00199 "), "the end of the last line is kept");
    assert!(
        seen.contains("characters (about ") && seen.contains("cut by Baton"),
        "{seen}"
    );
    assert!(seen.chars().count() < 400 + 200, "{}", seen.len());
    let (short, _) = run(vec![json!({"service": "checkout", "lines": 2})], Some(100)).await;
    assert!(!short.contains("cut by Baton"), "short output is untouched");
}

/// What a tool was told about its caller, call by call.
#[derive(Clone, Debug, PartialEq)]
struct Seen {
    agent: String,
    task: baton_core::TaskId,
    root: baton_core::TaskId,
    trace: baton_core::TraceId,
    dry_run: bool,
    deadline: bool,
}

/// `probe`: honours `dry_run` and remembers each call's context in `seen`.
fn probe(seen: Arc<std::sync::Mutex<Vec<Seen>>>) -> impl Tool {
    baton_core::testing::FnTool::new("probe", move |cx, _| {
        seen.lock().expect("not poisoned").push(Seen {
            agent: cx.agent.to_string(),
            task: cx.task,
            root: cx.root,
            trace: cx.trace,
            dry_run: cx.dry_run,
            deadline: cx.deadline.is_some(),
        });
        Ok("probed".into())
    })
    .with_parameters(json!({"type": "object", "properties": {"dry_run": {"type": "boolean"}}}))
    .with_dry_run()
}

/// The tasks each agent started, from the events.
struct Starts(Arc<std::sync::Mutex<Vec<(String, u64, u64)>>>);

impl Observer for Starts {
    fn on_event(&self, event: &Event<'_>) {
        if let Event::Started {
            agent, task, root, ..
        } = event
        {
            let mut v = self.0.lock().expect("not poisoned");
            v.push(((*agent).to_string(), *task, *root));
        }
    }
}

/// A tool sees who calls it: the agent, its task (a delegated one here), the run's root task and
/// trace, whether the harness judged the call a dry run (a `dry_run: true` the tool honours), and
/// the task's deadline.
#[tokio::test]
async fn a_tool_sees_its_caller_task_trace_and_dry_run() {
    let t = TopologyBuilder::new("t")
        .model("m", dollar_per_mtok())
        .tool("probe", ToolSpec::custom())
        .agent(
            "lead",
            AgentSpec::new(["m"]).children(["ops"]).tools(["probe"]),
        )
        .agent("ops", AgentSpec::new(["m"]).tools(["probe"]))
        .build()
        .expect("valid");
    let model = FnModel::new(|r: &ModelRequest<'_>| {
        Ok(match (r.agent, r.step) {
            ("lead", 1) => call(r, "probe", json!({})),
            ("lead", 2) => call(r, "delegate", json!({"agent": "ops", "task": "look"})),
            ("ops", 1) => call(r, "probe", json!({"dry_run": true})),
            ("ops", 2) => call(r, "probe", json!({"dry_run": false})),
            _ => text(r, "done"),
        })
    });
    let (seen, starts) = (Arc::default(), Arc::default());
    let rt = Runtime::builder(t)
        .model("m", model)
        .tool(probe(Arc::clone(&seen)))
        .observer(Starts(Arc::clone(&starts)))
        .start()
        .await
        .expect("starts");
    let budget = Budget {
        max_wall: Some(std::time::Duration::from_secs(60)),
        ..Budget::UNLIMITED
    };
    let handle = rt.spawn_with("probe twice", budget, None);
    let root = handle.id();
    let report = handle.await.expect("answered");
    rt.shutdown().await;
    assert_eq!(report.outcome, Outcome::Completed);
    let starts = starts.lock().expect("not poisoned").clone();
    let ops_task = starts
        .iter()
        .find(|(a, ..)| a == "ops")
        .map(|(_, t, _)| baton_core::TaskId(*t))
        .expect("ops started a task");
    assert_ne!(ops_task, root);
    let trace = baton_core::TraceId(root.0);
    let at = |agent: &str, task, dry_run| Seen {
        agent: agent.into(),
        task,
        root,
        trace,
        dry_run,
        deadline: true,
    };
    assert_eq!(
        *seen.lock().expect("not poisoned"),
        vec![
            at("lead", root, false),
            at("ops", ops_task, true),
            at("ops", ops_task, false),
        ]
    );
}
