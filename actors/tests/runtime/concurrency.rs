//! Tasks of one agent running at once.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tasks_each_end_once_and_conserve() {
    let topology = TopologyBuilder::new("t")
        .model("m", dollar_per_mtok())
        .agent("lead", AgentSpec::new(["m"]).children(["w"]))
        .agent("w", AgentSpec::new(["m"]))
        .build()
        .expect("valid");
    let model = FnModel::new(|r: &ModelRequest<'_>| {
        Ok(match (r.agent, r.step) {
            ("lead", 1) => call(r, "delegate", json!({"agent": "w", "task": "x"})),
            _ => text(r, "done"),
        })
    });
    let rt = Arc::new(
        Runtime::builder(topology)
            .model("m", model)
            .start()
            .await
            .expect("starts"),
    );
    let mut handles = Vec::new();
    for i in 0..200 {
        let rt = Arc::clone(&rt);
        handles.push(tokio::spawn(async move {
            rt.submit(format!("task {i}"), Budget::UNLIMITED).await
        }));
    }
    for h in handles {
        let run = h.await.expect("joined").expect("answered");
        assert_eq!(run.result.outcome, Outcome::Completed);
        assert_eq!(run.account.outcome(), Some(Outcome::Completed));
        run.account.check_conservation().expect("conserved");
        assert_eq!(run.account.snapshot().children.len(), 1);
    }
    if let Ok(rt) = Arc::try_unwrap(rt) {
        rt.shutdown().await;
    }
}
