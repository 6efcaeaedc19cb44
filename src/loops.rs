//! `baton run FILE` without `--task`: the topology's standing loops, printed run by run until
//! `--for` elapses or Ctrl-C / SIGTERM; and the signal handling the one-task run shares.

use anyhow::Context;
use baton::actors::{LoopEvent, Runtime};
use baton::core::NanoUsd;
use baton::topologies::Topology;

use crate::print::{one_line, usd};

/// Runs the topology's standing loops until `--for` elapses or Ctrl-C / SIGTERM, printing each run.
pub(crate) async fn run_loops(
    topology: Topology,
    (json, verbose): (bool, bool),
    audit: Option<baton::core::audit::AuditLog>,
    (run_for, grace): (Option<std::time::Duration>, std::time::Duration),
    store: Option<std::sync::Arc<baton::actors::LoopStore>>,
    approvals: Option<std::sync::Arc<baton::actors::ApprovalQueue>>,
    shared: Option<&crate::ledger::Shared>,
) -> anyhow::Result<baton::core::Outcome> {
    let mut builder = Runtime::builder(topology.clone());
    if let Some(shared) = shared {
        builder = shared.attach(builder);
    }
    if let Some(q) = approvals {
        builder = builder.approver(q);
    }
    if let Some(log) = audit {
        builder = builder.observer(baton::actors::AuditObserver::new(log));
    }
    if verbose {
        builder = builder.observer(crate::print::Printer::new(&topology));
    }
    let runtime = std::sync::Arc::new(builder.start().await.context("starting the runtime")?);
    crate::serve::before_work().await;
    let names: Vec<String> = topology
        .schedules()
        .iter()
        .map(|s| format!("{} {}", s.name, s.cadence))
        .collect();
    if !json {
        println!("▶ standing loops: {}", names.join(", "));
    }
    let stop = async move {
        let interrupt = interrupted();
        match run_for {
            Some(d) => {
                tokio::select! { () = tokio::time::sleep(d) => {}, () = interrupt => {} }
            }
            None => interrupt.await,
        }
    };
    let on_event = move |e: &LoopEvent| print_event(e, json, verbose);
    let summaries = match store {
        Some(store) => runtime
            .run_schedules_durable(store, stop, grace, on_event)
            .await
            .context("standing loops")?,
        None => runtime.run_schedules(stop, grace, on_event).await,
    };
    print_summaries(&summaries, json);
    runtime.shutdown().await;
    // A loop's exit code is 0: its runs' outcomes are in what it printed — unless the runtime
    // went down, which stops every loop: then the process fails, saying why.
    let down = summaries.iter().find_map(|s| s.runtime_down.clone());
    if let Some(why) = &down {
        eprintln!("error: the runtime is down, the standing loops stopped: {why}");
    }
    Ok(if down.is_some() {
        baton::core::Outcome::Failed
    } else {
        baton::core::Outcome::Completed
    })
}

/// Prints one event of the loops: a line of text, or a JSON line with `--json`.
fn print_event(e: &LoopEvent, json: bool, verbose: bool) {
    match e {
        LoopEvent::Ran { .. } => print_run(e, json, verbose),
        LoopEvent::Skipped { schedule } if !json => {
            println!(
                "{} [{schedule}] tick skipped: the previous run is still going",
                now_utc()
            );
        }
        LoopEvent::Breaker {
            schedule,
            state,
            reason,
        } => {
            if json {
                let line = serde_json::json!({"schedule": schedule.to_string(), "breaker": state, "reason": reason});
                println!("{line}");
            } else {
                let what = match state {
                    baton::actors::BreakerState::Open => "⏸ breaker open, loop paused",
                    baton::actors::BreakerState::HalfOpen => "◐ breaker half-open",
                    _ => "▶ breaker closed, loop resumed",
                };
                println!("{} [{schedule}] {what}: {reason}", now_utc());
            }
        }
        LoopEvent::Resumed {
            schedule,
            runs_before,
            period_spent,
            interrupted,
        } => {
            if json {
                let line = serde_json::json!({"schedule": schedule.to_string(), "resumed": {
                        "runs_before": runs_before, "period_spent_nanousd": period_spent.0,
                        "interrupted": interrupted}});
                println!("{line}");
            } else {
                let lost = if interrupted.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; interrupted run(s) {:?} charged their worst case",
                        interrupted
                    )
                };
                println!(
                    "{} [{schedule}] resumed after run {runs_before}: today {} so far{lost}",
                    now_utc(),
                    usd(*period_spent)
                );
            }
        }
        LoopEvent::NewPeriod { schedule } if !json => {
            println!("{} [{schedule}] new budget period", now_utc());
        }
        LoopEvent::Refused {
            schedule,
            run,
            reason,
        } => {
            if json {
                let line = serde_json::json!({"schedule": schedule.to_string(), "refused": {"run": run, "reason": reason}});
                println!("{line}");
            } else {
                let which = run.map_or_else(|| "tick".to_string(), |n| format!("run {n}"));
                println!(
                    "{} [{schedule}] ✗ {which} refused, nothing charged: the runtime is down ({}); the loop stops",
                    now_utc(),
                    one_line(reason, 200)
                );
            }
        }
        _ => {}
    }
}

/// Prints a finished run ([`LoopEvent::Ran`]): the tick it was due, its outcome and cost, the
/// period's spend, what the policy denied and the answer.
fn print_run(e: &LoopEvent, json: bool, verbose: bool) {
    let LoopEvent::Ran {
        schedule,
        run,
        report,
        period_spent,
        period_limit,
        hour,
        tick_ms,
        resumes,
        ..
    } = e
    else {
        return;
    };
    let tick = i64::try_from(*tick_ms)
        .ok()
        .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
        .map(|t| format!("{t:.0}"));
    if json {
        let line = serde_json::json!({"schedule": schedule.to_string(), "run": run, "report": report,
                "period_spent_nanousd": period_spent.0, "period_limit_nanousd": period_limit.map(|l| l.0),
                "hour_spent_nanousd": hour.map(|h| h.0.0), "hour_limit_nanousd": hour.map(|h| h.1.0),
                "tick": tick, "tick_ms": tick_ms, "resumes": resumes});
        println!("{line}");
    } else {
        let limit = period_limit.map_or(String::new(), |l| format!(" of {}", usd(l)));
        let hour = hour.map_or(String::new(), |(spent, limit)| {
            format!(" · this hour {} of {}", usd(spent), usd(limit))
        });
        let resumed = resumes.map_or(String::new(), |n| format!(" (resumes run {n})"));
        // The time it was due, UTC, to the second.
        let at = tick.as_deref().and_then(|t| t.get(11..19)).unwrap_or("");
        // What the policy refused in the run, if anything: tool (rule).
        let mut denied: Vec<String> = Vec::new();
        for p in report
            .policy
            .iter()
            .filter(|p| p.decision.decision == "denied")
        {
            let d = format!("{} ({})", p.decision.tool, p.decision.rule);
            if !denied.contains(&d) {
                denied.push(d);
            }
        }
        let denied = if denied.is_empty() {
            String::new()
        } else {
            format!(" · denied {}", denied.join(", "))
        };
        let b = &report.scoreboard;
        let value = if b.value_nanousd > 0 {
            format!(
                " · value {}{}",
                usd(NanoUsd(b.value_nanousd)),
                b.roi.map_or(String::new(), |r| format!(" (ROI {r:.1})"))
            )
        } else {
            String::new()
        };
        if verbose {
            // As a --task run ends: the agents' table and the scoreboard.
            let _ = crate::print::print_summary(&mut std::io::stdout(), report);
        }
        println!(
            "{at} [{schedule}] run {run}{resumed}: {} · {}{value} · today {}{limit}{hour}{denied} · {}",
            report.outcome,
            usd(NanoUsd(report.totals.cost_nanousd)),
            usd(*period_spent),
            one_line(
                report
                    .answer
                    .as_deref()
                    .or(report.error.as_deref())
                    .unwrap_or(""),
                90
            )
        );
    }
}

/// Prints what each loop did in the end: runs, skips, the breaker, cost and score.
fn print_summaries(summaries: &[baton::actors::LoopSummary], json: bool) {
    if json {
        println!("{}", serde_json::json!({ "loops": summaries }));
    } else {
        for s in summaries {
            let breaker = if s.paused + s.breaker_trips > 0 {
                format!(
                    ", {} paused by the breaker ({} trip(s))",
                    s.paused, s.breaker_trips
                )
            } else {
                String::new()
            };
            // Value, ROI and energy per completed run, when the loop declares a value or its
            // calls have an energy figure.
            let score = s
                .scoreboard
                .as_ref()
                .filter(|b| b.value_nanousd > 0 || b.energy_j > 0.0)
                .map_or(String::new(), |b| {
                    format!(
                        " · value {} · ROI {} · {} per completed run",
                        usd(NanoUsd(b.value_nanousd)),
                        b.roi.map_or("-".into(), |r| format!("{r:.1}")),
                        b.energy_per_completed_workflow_j
                            .map_or("-".into(), |j| format!("{j:.0} J")),
                    )
                });
            // Loops shared through a ledger: ticks other replicas ran, and ticks no one could
            // claim while the ledger was unreachable.
            let shared = match (s.elsewhere, s.unclaimed) {
                (0, 0) => String::new(),
                (e, 0) => format!(", {e} run on other replicas"),
                (e, u) => {
                    format!(", {e} run on other replicas, {u} not run (the ledger was unreachable)")
                }
            };
            println!(
                "■ {}: {} run(s), {} skipped{breaker}{shared}, {}{score}",
                s.schedule,
                s.runs,
                s.skipped,
                usd(NanoUsd(s.cost_nanousd))
            );
        }
    }
}

/// The wall-clock time, UTC, to the second (`14:05:00`): what every loop line starts with.
fn now_utc() -> String {
    let t = format!("{:.0}", jiff::Timestamp::now());
    t.get(11..19).unwrap_or("").to_string()
}

/// Completes when `signal` arrives (never, without one).
#[cfg(unix)]
async fn wait_for(signal: Option<&mut tokio::signal::unix::Signal>) {
    match signal {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending::<()>().await,
    }
}

/// A future that completes on Ctrl-C or SIGTERM. The handlers are installed when this is
/// called (not when the future is first polled), so a signal that arrives meanwhile is not lost
/// to the default action.
pub(crate) fn interrupted() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).ok();
        let mut int = signal(SignalKind::interrupt()).ok();
        async move {
            tokio::select! {
                () = wait_for(term.as_mut()) => {}
                () = wait_for(int.as_mut()) => {}
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
