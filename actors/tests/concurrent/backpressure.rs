//! max_concurrency and queue: admission, busy refusals.

use super::*;

fn limited(max: u32, queue: u32) -> Topology {
    TopologyBuilder::new("t")
        .model("m", priced())
        .agent("solo", AgentSpec::new(["m"]).concurrency(max, queue))
        .build()
        .expect("valid")
}

/// A report's `wall_ms` is the task's running time; the time it waited for a slot is
/// `queued_ms`: with one slot, the second of two 50 ms tasks waited 50 ms and ran 50 ms.
#[tokio::test(start_paused = true)]
async fn reports_separate_queued_time_from_running_time() {
    let rt = Runtime::builder(limited(1, 1))
        .model("m", slow(50, |r: &ModelRequest<'_>| Ok(text(r, "ok"))))
        .start()
        .await
        .expect("starts");
    let (first, second) = (rt.spawn("one"), rt.spawn("two"));
    let (first, second) = (first.await.expect("runs"), second.await.expect("runs"));
    assert_eq!((first.totals.queued_ms, first.totals.wall_ms), (0, 50));
    assert_eq!((second.totals.queued_ms, second.totals.wall_ms), (50, 50));
    rt.shutdown().await;
}

/// With `max_concurrency: 2` and `queue: 1`, a fourth task arriving while three are there is
/// refused `busy` at once, having spent nothing; the other three complete (two together, then
/// the queued one).
#[tokio::test(start_paused = true)]
async fn a_full_queue_refuses_busy_at_once() {
    let rt = Arc::new(
        Runtime::builder(limited(2, 1))
            .model("m", slow(50, |r: &ModelRequest<'_>| Ok(text(r, "ok"))))
            .start()
            .await
            .expect("starts"),
    );
    let t0 = Instant::now();
    let runs: Vec<_> = (0..4)
        .map(|i| {
            let rt = Arc::clone(&rt);
            tokio::spawn(async move {
                let r = rt.submit(format!("t{i}"), Budget::UNLIMITED).await;
                (r, Instant::now())
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for r in runs {
        let (run, at) = r.await.expect("joined");
        let run = run.expect("runs");
        outcomes.push((run.result.outcome, at.duration_since(t0).as_millis()));
        if run.result.outcome == Outcome::Busy {
            assert_eq!(run.account.spent(), NanoUsd::ZERO);
            assert!(
                run.result.text.contains("`solo` is busy"),
                "{}",
                run.result.text
            );
        }
    }
    outcomes.sort_by_key(|(_, at)| *at);
    assert_eq!(
        outcomes,
        [
            (Outcome::Busy, 0),
            (Outcome::Completed, 50),
            (Outcome::Completed, 50),
            (Outcome::Completed, 100),
        ]
    );
    assert_eq!(Outcome::Busy.exit_code(), 9);
}

/// `max_concurrency: 1` runs an agent's tasks one after another, in arrival order.
#[tokio::test(start_paused = true)]
async fn max_concurrency_one_runs_tasks_in_turn() {
    let rt = Arc::new(
        Runtime::builder(limited(1, 100))
            .model(
                "m",
                slow(50, |r: &ModelRequest<'_>| Ok(text(r, &task_of(r)))),
            )
            .start()
            .await
            .expect("starts"),
    );
    let t0 = Instant::now();
    let mut handles = Vec::new();
    for i in 0..3 {
        let rt = Arc::clone(&rt);
        handles.push(tokio::spawn(async move {
            let r = rt.submit(format!("t{i}"), Budget::UNLIMITED).await;
            (r, Instant::now())
        }));
        tokio::task::yield_now().await;
    }
    let mut ends = Vec::new();
    for h in handles {
        let (r, at) = h.await.expect("joined");
        ends.push((
            r.expect("runs").result.text,
            at.duration_since(t0).as_millis(),
        ));
    }
    assert_eq!(
        ends,
        [
            ("t0".to_string(), 50),
            ("t1".to_string(), 100),
            ("t2".to_string(), 150)
        ]
    );
}
