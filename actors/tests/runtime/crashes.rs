//! Crashes of models and tools, and what supervision makes of them.

use super::*;
use baton_actors::{Event, Observer};

/// An observer that panics on a chosen task's first step: a bug outside the loop's guards, so
/// it takes down the agent actor that called it.
struct Bomb {
    agent: &'static str,
    armed: AtomicU32,
}

impl Observer for Bomb {
    fn on_event(&self, event: &Event<'_>) {
        if let Event::Step { agent, .. } = event
            && *agent == self.agent
            && self.armed.swap(0, Ordering::SeqCst) == 1
        {
            panic!("observer bug");
        }
    }
}

#[tokio::test]
async fn root_agent_crash_ends_its_task_failed_and_the_next_task_runs() {
    let topology = single(AgentSpec::new(["m"]));
    let rt = Runtime::builder(topology)
        .model("m", ScriptedModel::always("m", "ok"))
        .tool(echo())
        .observer(Bomb {
            agent: "solo",
            armed: AtomicU32::new(1),
        })
        .start()
        .await
        .expect("starts");
    let first = rt.submit("one", Budget::UNLIMITED).await.expect("answered");
    assert_eq!(first.result.outcome, Outcome::Failed);
    assert_eq!(first.account.outcome(), Some(Outcome::Failed));
    // Money spent before the crash stays spent.
    assert!(first.account.spent().0 > 0);
    first.account.check_conservation().expect("conserved");
    let second = rt.submit("two", Budget::UNLIMITED).await.expect("answered");
    assert_eq!(second.result.outcome, Outcome::Completed);
    assert_eq!(
        rt.in_flight(),
        0,
        "the task table is empty when nothing runs"
    );
    rt.shutdown().await;
}

#[tokio::test]
async fn child_crash_is_one_failed_outcome_for_the_parent_to_see() {
    let topology = TopologyBuilder::new("t")
        .model("m", dollar_per_mtok())
        .agent("lead", AgentSpec::new(["m"]).children(["w"]))
        .agent("w", AgentSpec::new(["m"]))
        .build()
        .expect("valid");
    let model = FnModel::new(|r: &ModelRequest<'_>| {
        Ok(match (r.agent, r.step) {
            ("lead", 1) => call(r, "delegate", json!({"agent": "w", "task": "x"})),
            ("lead", 2) => call(r, "delegate", json!({"agent": "w", "task": "again"})),
            ("lead", _) => {
                let seen: Vec<&str> = r
                    .messages
                    .iter()
                    .filter(|m| m.role == Role::Tool)
                    .map(|m| m.content.as_str())
                    .collect();
                text(r, &seen.join(" | "))
            }
            _ => text(r, "w answered"),
        })
    });
    let rt = Runtime::builder(topology)
        .model("m", model)
        .observer(Bomb {
            agent: "w",
            armed: AtomicU32::new(1),
        })
        .start()
        .await
        .expect("starts");
    let run = rt.submit("go", Budget::UNLIMITED).await.expect("answered");
    assert_eq!(run.result.outcome, Outcome::Completed);
    assert_eq!(
        run.result.text, "`w` ended failed: `w` crashed: observer bug | w answered",
        "restarted on the next task"
    );
    let snap = run.account.snapshot();
    let outcomes: Vec<_> = snap.children.iter().map(|c| c.outcome).collect();
    assert_eq!(outcomes, [Some(Outcome::Failed), Some(Outcome::Completed)]);
    assert!(
        snap.children[0].spent.0 > 0,
        "the crashed child's spend stays booked"
    );
    run.account.check_conservation().expect("conserved");
    rt.shutdown().await;
}
