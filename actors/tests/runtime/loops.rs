//! Standing loops under paused time: cadences, overlap, budgets per period, breakers, state.

use super::*;
use baton_actors::{Event, LoopEvent, Observer};
use baton_topologies::{Overlap, ScheduleSpec};
use std::sync::Mutex;

fn looped(
    every: u64,
    overlap: Overlap,
    per_day: Option<&str>,
    run_budget: Option<&str>,
) -> Topology {
    let mut spec = TopologyBuilder::new("t")
        .model("m", dollar_per_mtok())
        .agent("watch", AgentSpec::new(["m"]))
        .build()
        .expect("valid")
        .spec()
        .clone();
    spec.schedules.insert(
        "latency".into(),
        ScheduleSpec {
            every: Some(Duration::from_secs(every)),
            cron: None,
            timezone: None,
            on_interrupted: None,
            task: "check the latency".into(),
            budget: BudgetSpec {
                max_usd: run_budget.and_then(usd),
                ..BudgetSpec::default()
            },
            per_day_usd: per_day.and_then(usd),
            per_hour_usd: None,
            overlap: Some(overlap),
            jitter: None,
            breaker: None,
            value: None,
        },
    );
    Topology::from_spec(spec, std::path::Path::new(".")).expect("valid schedule")
}

type Seen = Arc<Mutex<Vec<(u64, String, u64, u64)>>>;

async fn run(
    t: Topology,
    latency: Duration,
    until: Duration,
    grace: Duration,
) -> (Vec<baton_actors::LoopSummary>, Seen) {
    let rt = Arc::new(
        Runtime::builder(t)
            .model(
                "m",
                ScriptedModel::always("m", "all quiet").with_latency(latency),
            )
            .start()
            .await
            .expect("starts"),
    );
    let seen: Seen = Arc::default();
    let s = Arc::clone(&seen);
    let summary = rt
        .run_schedules(tokio::time::sleep(until), grace, move |e| {
            if let LoopEvent::Ran {
                run,
                report,
                period_spent,
                period_limit,
                ..
            } = e
            {
                s.lock().expect("lock").push((
                    *run,
                    report.outcome.to_string(),
                    period_spent.0,
                    period_limit.map_or(0, |l| l.0),
                ));
            }
        })
        .await;
    (summary, seen)
}

#[tokio::test(start_paused = true)]
async fn runs_every_period_until_stopped() {
    let (s, seen) = run(
        looped(60, Overlap::Skip, None, None),
        Duration::ZERO,
        Duration::from_secs(270),
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(
        (s[0].runs, s[0].skipped),
        (5, 0),
        "t = 0, 1, 2, 3, 4 minutes"
    );
    let seen = seen.lock().expect("lock");
    assert_eq!(seen.len(), 5);
    assert!(seen.iter().all(|(_, o, _, _)| o == "completed"));
    assert!(s[0].cost_nanousd > 0);
}

/// A loop paused by hand skips its ticks (counted as `held`, nothing run or charged) until
/// resumed; its next tick then runs. Unknown schedules are refused.
#[tokio::test(start_paused = true)]
async fn a_paused_loop_skips_its_ticks_until_resumed() {
    let rt = Arc::new(
        Runtime::builder(looped(60, Overlap::Skip, None, None))
            .model("m", ScriptedModel::always("m", "all quiet"))
            .start()
            .await
            .expect("starts"),
    );
    assert!(!rt.pause_schedule("nope"), "no such schedule");
    let control = Arc::clone(&rt);
    // Runs at 0 s; paused at 30 s (ticks at 60, 120, 180 skipped); resumed at 200 s: runs at
    // 240 s; stopped at 270 s.
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(control.pause_schedule("latency"));
        assert!(control.schedule_paused("latency"));
        tokio::time::sleep(Duration::from_secs(170)).await;
        assert!(control.resume_schedule("latency"));
    });
    let runs: Seen = Arc::default();
    let r = Arc::clone(&runs);
    let s = rt
        .run_schedules(
            tokio::time::sleep(Duration::from_secs(270)),
            Duration::from_secs(5),
            move |e| {
                if let LoopEvent::Ran { run, report, .. } = e {
                    r.lock()
                        .expect("lock")
                        .push((*run, report.outcome.to_string(), 0, 0));
                }
            },
        )
        .await;
    assert_eq!((s[0].runs, s[0].held, s[0].skipped), (2, 3, 0));
    let runs: Vec<u64> = runs.lock().expect("lock").iter().map(|r| r.0).collect();
    assert_eq!(runs, [1, 2]);
    assert!(!rt.schedule_paused("latency"));
}

#[tokio::test(start_paused = true)]
async fn overlapping_ticks_are_skipped_or_queued() {
    // Each run takes 90 s; ticks every 60 s; stop after 270 s.
    let (s, _) = run(
        looped(60, Overlap::Skip, None, None),
        Duration::from_secs(90),
        Duration::from_secs(270),
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(
        (s[0].runs, s[0].skipped),
        (3, 2),
        "runs at 0, 120, 240 s; 60 and 180 skipped"
    );
    let (s, seen) = run(
        looped(60, Overlap::Queue, None, None),
        Duration::from_secs(90),
        Duration::from_secs(270),
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(s[0].skipped, 0);
    assert_eq!(s[0].runs, 3, "back to back: 0-90, 90-180, 180-270");
    assert_eq!(
        seen.lock().expect("lock").len(),
        3,
        "the run in flight at the stop finished within the grace"
    );
}

#[tokio::test(start_paused = true)]
async fn cancel_previous_and_grace_end_runs_cancelled() {
    let (s, seen) = run(
        looped(60, Overlap::CancelPrevious, None, None),
        Duration::from_secs(90),
        Duration::from_secs(150),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(s[0].runs, 3);
    let outcomes: Vec<String> = seen
        .lock()
        .expect("lock")
        .iter()
        .map(|(_, o, _, _)| o.clone())
        .collect();
    assert_eq!(
        outcomes,
        ["cancelled", "cancelled", "cancelled"],
        "two superseded, the last cut at the end of the grace"
    );
}

#[tokio::test(start_paused = true)]
async fn the_period_budget_holds_and_rolls_over() {
    // A run books $0.000015 but must first reserve its worst case (~$0.00012); a period of
    // $0.00015 affords three runs, then refuses until the next 24-hour period.
    let (s, seen) = run(
        looped(6 * 3600, Overlap::Skip, Some("0.00015"), None),
        Duration::ZERO,
        Duration::from_secs(31 * 3600),
        Duration::from_secs(5),
    )
    .await;
    let seen = seen.lock().expect("lock");
    let outcomes: Vec<&str> = seen.iter().map(|(_, o, _, _)| o.as_str()).collect();
    assert_eq!(
        outcomes,
        [
            "completed",
            "completed",
            "completed",
            "budget_exceeded",
            "completed",
            "completed"
        ],
        "{seen:?}"
    );
    assert!(
        seen.iter().all(|(_, _, spent, limit)| spent <= limit),
        "never past the period's limit: {seen:?}"
    );
    assert_eq!(s[0].runs, 6);
}

/// Records the breaker's changes as the observers (the audit trail) see them.
struct BreakerLog(Arc<Mutex<Vec<String>>>);
impl Observer for BreakerLog {
    fn on_event(&self, e: &Event<'_>) {
        if let Event::Breaker {
            schedule, state, ..
        } = e
        {
            self.0
                .lock()
                .expect("lock")
                .push(format!("{schedule} {state}"));
        }
    }
}

#[tokio::test(start_paused = true)]
async fn the_spend_breaker_opens_half_opens_and_closes() {
    // A run books $0.000015. Every minute; the breaker opens when more than $0.00004 was
    // spent within 10 minutes (the third run), pauses 30 minutes, then lets one trial through.
    let mut spec = looped(60, Overlap::Skip, None, None).spec().clone();
    if let Some(s) = spec.schedules.get_mut("latency") {
        s.breaker = Some(baton_topologies::BreakerSpec {
            window: Duration::from_secs(600),
            max_usd: usd("0.00004"),
            spike: None,
            cool_down: Some(Duration::from_secs(1800)),
            min_roi: None,
            min_runs: None,
        });
    }
    let t = Topology::from_spec(spec, std::path::Path::new(".")).expect("valid breaker");
    let audited = Arc::new(Mutex::new(Vec::new()));
    let rt = Arc::new(
        Runtime::builder(t)
            .model("m", ScriptedModel::always("m", "all quiet"))
            .observer(BreakerLog(Arc::clone(&audited)))
            .start()
            .await
            .expect("starts"),
    );
    let events = Arc::new(Mutex::new(Vec::new()));
    let ev = Arc::clone(&events);
    let start = tokio::time::Instant::now();
    // Runs at 0, 1 and 2 min (the third opens it); ticks at 3..=31 min are paused; the tick at
    // 32 min is the trial (it closes it); runs at 33 and 34 min; stop at 34.5 min — the run at
    // 34 min brings the window to $0.000045 and opens it again.
    let summary = rt
        .run_schedules(
            tokio::time::sleep(Duration::from_secs(34 * 60 + 30)),
            Duration::from_secs(5),
            move |e| {
                let at = start.elapsed().as_secs() / 60;
                let line = match e {
                    LoopEvent::Ran { run, report, .. } => {
                        format!("{at}m run {run} {}", report.outcome)
                    }
                    LoopEvent::Breaker { state, .. } => format!("{at}m breaker {state}"),
                    _ => return,
                };
                ev.lock().expect("lock").push(line);
            },
        )
        .await;
    let events = events.lock().expect("lock").clone();
    assert_eq!(
        events,
        [
            "0m run 1 completed",
            "1m run 2 completed",
            "2m run 3 completed",
            "2m breaker open",
            "32m breaker half_open",
            "32m run 4 completed",
            "32m breaker closed",
            "33m run 5 completed",
            "34m run 6 completed",
            "34m breaker open",
        ]
    );
    assert_eq!(
        (summary[0].runs, summary[0].paused, summary[0].breaker_trips),
        (6, 29, 2)
    );
    assert_eq!(
        *audited.lock().expect("lock"),
        [
            "latency open",
            "latency half_open",
            "latency closed",
            "latency open"
        ],
        "every change reaches the observers (the audit trail)"
    );
}

/// `min_roi`: a loop whose runs are worth less than they cost pauses itself once `min_runs`
/// runs are in the window; the half-open trial is judged on its own value and re-opens it.
/// Each run's report carries the schedule's value and its ROI, to the nano-dollar.
#[tokio::test(start_paused = true)]
async fn the_roi_breaker_pauses_a_loop_that_does_not_pay_for_itself() {
    // A run books $0.000015 and is worth $0.00001: ROI 0.67.
    let mut spec = looped(60, Overlap::Skip, None, None).spec().clone();
    if let Some(s) = spec.schedules.get_mut("latency") {
        s.value = Some(baton_topologies::ValueSpec {
            value_usd: usd("0.00001"),
            on_answer_matching: Vec::new(),
        });
        s.breaker = Some(baton_topologies::BreakerSpec {
            window: Duration::from_secs(600),
            max_usd: None,
            spike: None,
            cool_down: None, // the window: 10 minutes
            min_roi: Some(1.0),
            min_runs: Some(3),
        });
    }
    let t = Topology::from_spec(spec, std::path::Path::new(".")).expect("valid breaker");
    let rt = Arc::new(
        Runtime::builder(t)
            .model("m", ScriptedModel::always("m", "all quiet"))
            .start()
            .await
            .expect("starts"),
    );
    let events = Arc::new(Mutex::new(Vec::new()));
    let ev = Arc::clone(&events);
    let start = tokio::time::Instant::now();
    rt.run_schedules(
        tokio::time::sleep(Duration::from_secs(12 * 60 + 30)),
        Duration::from_secs(5),
        move |e| {
            let at = start.elapsed().as_secs() / 60;
            let line = match e {
                LoopEvent::Ran { run, report, .. } => {
                    let b = &report.scoreboard;
                    assert_eq!(b.value_nanousd, 10_000);
                    assert_eq!(b.sums.cost_nanousd, 15_000);
                    assert_eq!(b.roi, Some(10_000.0 / 15_000.0));
                    format!("{at}m run {run} {}", report.outcome)
                }
                LoopEvent::Breaker { state, reason, .. } => {
                    format!("{at}m breaker {state}: {reason}")
                }
                _ => return,
            };
            ev.lock().expect("lock").push(line);
        },
    )
    .await;
    let events = events.lock().expect("lock").clone();
    let roi = "3 runs in the last 10m produced $0.000030 of value for $0.000045 spent: ROI 0.67, below min_roi 1";
    assert_eq!(
            events,
            [
                "0m run 1 completed".to_string(),
                "1m run 2 completed".into(),
                "2m run 3 completed".into(),
                format!("2m breaker open: {roi}"),
                "12m breaker half_open: the cool-down has passed: one trial run".into(),
                "12m run 4 completed".into(),
                "12m breaker open: the trial run: 1 run in the last 10m produced $0.000010 of value for $0.000015 spent: ROI 0.67, below min_roi 1".into(),
            ]
        );
}

/// An open breaker and the day's spend are in the state file: a new runtime on the same
/// file stays paused and reports the spend carried over.
#[tokio::test(start_paused = true)]
async fn the_breaker_and_the_spend_hold_across_a_restart() {
    let path = std::env::temp_dir().join(format!("baton-loop-{}.redb", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let store = Arc::new(baton_actors::LoopStore::open(&path).expect("opens"));
    let mut spec = looped(60, Overlap::Skip, Some("1"), None).spec().clone();
    if let Some(s) = spec.schedules.get_mut("latency") {
        s.breaker = Some(baton_topologies::BreakerSpec {
            window: Duration::from_secs(600),
            max_usd: usd("0.00002"),
            spike: None,
            cool_down: Some(Duration::from_secs(3600)),
            min_roi: None,
            min_runs: None,
        });
    }
    let t = Topology::from_spec(spec, std::path::Path::new(".")).expect("valid");
    let start = |t: Topology| async move {
        Arc::new(
            Runtime::builder(t)
                .model("m", ScriptedModel::always("m", "all quiet"))
                .start()
                .await
                .expect("starts"),
        )
    };
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = |seen: &Arc<Mutex<Vec<String>>>| {
        let s = Arc::clone(seen);
        move |e: &LoopEvent| {
            let line = match e {
                LoopEvent::Ran { run, .. } => format!("run {run}"),
                LoopEvent::Breaker { state, .. } => format!("breaker {state}"),
                LoopEvent::Resumed {
                    runs_before,
                    period_spent,
                    interrupted,
                    ..
                } => format!("resumed {runs_before} {} {interrupted:?}", period_spent.0),
                _ => return,
            };
            s.lock().expect("lock").push(line);
        }
    };
    let rt = start(t.clone()).await;
    let first = rt
        .run_schedules_durable(
            Arc::clone(&store),
            tokio::time::sleep(Duration::from_secs(5 * 60)),
            Duration::from_secs(5),
            record(&seen),
        )
        .await
        .expect("runs");
    assert_eq!((first[0].runs, first[0].paused), (2, 3));
    if let Ok(rt) = Arc::try_unwrap(rt) {
        rt.shutdown().await;
    }
    let rt = start(t).await;
    let second = rt
        .run_schedules_durable(
            store,
            tokio::time::sleep(Duration::from_secs(5 * 60)),
            Duration::from_secs(5),
            record(&seen),
        )
        .await
        .expect("runs");
    assert_eq!(
        *seen.lock().expect("lock"),
        ["run 1", "run 2", "breaker open", "resumed 2 30000 []"],
        "two runs of $0.000015 open the breaker; after the restart it is still open"
    );
    assert_eq!((second[0].runs, second[0].paused), (0, 5));
    let _ = std::fs::remove_file(&path);
}

/// The test loop's schedule, edited and validated again.
fn edited(t: &Topology, edit: impl FnOnce(&mut ScheduleSpec)) -> Topology {
    let mut spec = t.spec().clone();
    if let Some(s) = spec.schedules.get_mut("latency") {
        edit(s);
    }
    Topology::from_spec(spec, std::path::Path::new(".")).expect("valid")
}

/// Each run's tick (Unix ms), in order.
async fn run_ticks(t: Topology, until: Duration) -> Vec<u64> {
    let rt = Arc::new(
        Runtime::builder(t)
            .model("m", ScriptedModel::always("m", "all quiet"))
            .start()
            .await
            .expect("starts"),
    );
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = Arc::clone(&seen);
    let started = wall_now_ms();
    rt.run_schedules(
        tokio::time::sleep(until),
        Duration::from_secs(5),
        move |e| {
            if let LoopEvent::Ran { tick_ms, .. } = e {
                s.lock().expect("lock").push(*tick_ms);
            }
        },
    )
    .await;
    let ticks = seen.lock().expect("lock").clone();
    assert!(
        ticks.first().is_some_and(|&t| t >= started),
        "{ticks:?} before {started}"
    );
    ticks
}

fn wall_now_ms() -> u64 {
    u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_millis(),
    )
    .expect("fits")
}

/// A cron schedule runs at its times, on the wall clock: `*/5 * * * *` at :00, :05, :10…
/// of every hour (not five minutes from the start), and six fields count seconds.
#[tokio::test(start_paused = true)]
async fn cron_runs_at_its_times() {
    let t = edited(&looped(60, Overlap::Skip, None, None), |s| {
        s.every = None;
        s.cron = Some("*/5 * * * *".into());
    });
    let ticks = run_ticks(t, Duration::from_secs(31 * 60)).await;
    assert!((6..=7).contains(&ticks.len()), "{ticks:?}");
    for (i, t) in ticks.iter().enumerate() {
        assert_eq!(
            t % 300_000,
            0,
            "run {i} at {t} is not on a five-minute mark"
        );
        if i > 0 {
            assert_eq!(t - ticks[i - 1], 300_000, "{ticks:?}");
        }
    }
    let t = edited(&looped(60, Overlap::Skip, None, None), |s| {
        s.every = None;
        s.cron = Some("15,45 * * * * *".into());
    });
    let ticks = run_ticks(t, Duration::from_secs(120)).await;
    assert!((3..=4).contains(&ticks.len()), "{ticks:?}");
    for t in &ticks {
        assert!([15_000, 45_000].contains(&(t % 60_000)), "{ticks:?}");
    }
}

/// `on_interrupted: resume`: a run the process died in is recorded `interrupted`, charged
/// its worst case, and its task is given again at once, as the next run (standing for the
/// first tick of `every`); `end` (the default) leaves it at that.
#[tokio::test(start_paused = true)]
async fn an_interrupted_run_is_resumed_or_ended_as_the_loop_says() {
    // (cron once a year, resume, what runs in the first minute)
    for (cron, resume, expect) in [
        (false, true, vec!["run 4 resumes Some(3)"]),
        (false, false, vec!["run 4 resumes None"]),
        (true, true, vec!["run 4 resumes Some(3)"]),
        (true, false, vec![]),
    ] {
        let path = std::env::temp_dir().join(format!(
            "baton-resume-{}-{cron}-{resume}.redb",
            std::process::id()
        ));
        let _ = std::fs::remove_file(&path);
        let store = Arc::new(baton_actors::LoopStore::open(&path).expect("opens"));
        let state = baton_actors::LoopState {
            runs: 3,
            ..Default::default()
        };
        let running = baton_actors::RunRecord {
            task: 0,
            outcome: "running".into(),
            cost_nanousd: 0,
            limit_nanousd: Some(1_000),
            started_ms: wall_now_ms(),
            resumes: None,
        };
        store
            .save("latency", &state, Some((3, &running)))
            .expect("saves");
        // Hourly: the first tick is due at once, and a resumed run stands for it (one run,
        // not two). Once a year: only a resumed run runs now.
        let t = edited(&looped(3600, Overlap::Skip, None, Some("0.01")), |s| {
            s.on_interrupted = resume.then_some(baton_topologies::OnInterrupted::Resume);
            if cron {
                s.every = None;
                s.cron = Some("0 0 1 1 *".into());
            }
        });
        let rt = Arc::new(
            Runtime::builder(t)
                .model("m", ScriptedModel::always("m", "all quiet"))
                .start()
                .await
                .expect("starts"),
        );
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = Arc::clone(&seen);
        rt.run_schedules_durable(
            Arc::clone(&store),
            tokio::time::sleep(Duration::from_secs(60)),
            Duration::from_secs(5),
            move |e| {
                if let LoopEvent::Ran { run, resumes, .. } = e {
                    s.lock()
                        .expect("lock")
                        .push(format!("run {run} resumes {resumes:?}"));
                }
            },
        )
        .await
        .expect("runs");
        assert_eq!(
            *seen.lock().expect("lock"),
            expect,
            "cron: {cron}, resume: {resume}"
        );
        let runs = store.runs("latency").expect("reads");
        assert_eq!(runs[0].1.outcome, "interrupted");
        assert_eq!(runs[0].1.cost_nanousd, 1_000, "charged its worst case");
        assert_eq!(runs.len(), 1 + expect.len(), "{runs:?}");
        if let Some((n, r)) = runs.get(1) {
            assert_eq!((*n, r.outcome.as_str()), (4, "completed"));
            assert_eq!(r.resumes, resume.then_some(3));
        }
        let _ = std::fs::remove_file(&path);
    }
}

#[tokio::test(start_paused = true)]
async fn jitter_delays_each_run_within_its_bound() {
    let mut spec = looped(60, Overlap::Skip, None, None).spec().clone();
    if let Some(s) = spec.schedules.get_mut("latency") {
        s.jitter = Some(Duration::from_secs(20));
    }
    let t = Topology::from_spec(spec, std::path::Path::new(".")).expect("valid");
    let rt = Arc::new(
        Runtime::builder(t)
            .model("m", ScriptedModel::always("m", "all quiet"))
            .start()
            .await
            .expect("starts"),
    );
    let start = tokio::time::Instant::now();
    let at = Arc::new(Mutex::new(Vec::new()));
    let a = Arc::clone(&at);
    rt.run_schedules(
        tokio::time::sleep(Duration::from_secs(20 * 60)),
        Duration::from_secs(5),
        move |e| {
            if let LoopEvent::Ran { run, .. } = e {
                a.lock()
                    .expect("lock")
                    .push((*run, start.elapsed().as_millis()));
            }
        },
    )
    .await;
    let at = at.lock().expect("lock").clone();
    assert!(at.len() >= 19, "{at:?}");
    let offsets: Vec<u128> = at
        .iter()
        .map(|&(run, ms)| {
            let tick = u128::from(run - 1) * 60_000;
            assert!(
                ms >= tick && ms < tick + 20_000,
                "run {run} at {ms} ms: within 20 s after its tick"
            );
            ms - tick
        })
        .collect();
    let distinct: std::collections::BTreeSet<_> = offsets.iter().collect();
    assert!(distinct.len() > 10, "the delays vary: {offsets:?}");
}

#[tokio::test(start_paused = true)]
async fn the_hourly_budget_holds_inside_the_day() {
    // Every 10 minutes; an hour of $0.00015 affords three runs (as above), the day has plenty.
    let mut spec = looped(600, Overlap::Skip, Some("1"), None).spec().clone();
    if let Some(s) = spec.schedules.get_mut("latency") {
        s.per_hour_usd = usd("0.00015");
    }
    let t = Topology::from_spec(spec, std::path::Path::new(".")).expect("valid schedule");
    let (s, seen) = run(
        t,
        Duration::ZERO,
        Duration::from_secs(65 * 60),
        Duration::from_secs(5),
    )
    .await;
    let seen = seen.lock().expect("lock");
    let outcomes: Vec<&str> = seen.iter().map(|(_, o, _, _)| o.as_str()).collect();
    assert_eq!(
        outcomes,
        [
            "completed",
            "completed",
            "completed",
            "budget_exceeded",
            "budget_exceeded",
            "budget_exceeded",
            "completed"
        ],
        "the fourth to sixth runs of the first hour are refused, the next hour runs: {seen:?}"
    );
    // Refused runs spend nothing; the day's spend is the four completed runs, all of it
    // in the summary.
    let day: Vec<u64> = seen.iter().map(|(_, _, spent, _)| *spent).collect();
    assert_eq!(day[3], day[2], "{seen:?}");
    assert_eq!(day[5], day[2], "{seen:?}");
    assert_eq!(s[0].cost_nanousd, day[6]);
    assert_eq!(day[6], 4 * day[0]);
}
