//! Standing loops: each schedule of the topology gives the root agent its task every `every`,
//! with a per-run budget and per-period (24 h, and 1 h inside it) budgets enforced by the ledger:
//! every run's account is opened under the hour's account, itself under the day's, so a run that
//! would take either past its limit is refused before it spends, like any other budget.
//!
//! Ticks that find the previous run still going follow the schedule's `overlap` (skip, queue one,
//! or cancel the previous run). Stopping (the caller's `stop` future: `--for`, Ctrl-C) ends the
//! ticking, lets runs in flight finish for up to `grace`, then cancels them: every run still ends
//! with exactly one recorded outcome.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use baton_core::{Account, NanoUsd, TaskId};
use baton_topologies::{Overlap, ScheduleDef};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::breaker::{Admit, Breaker, BreakerState, Transition};
use crate::observer::Event;
use crate::report::RunReport;
use crate::runtime::Runtime;

/// The length of a budget period.
pub const PERIOD: Duration = Duration::from_secs(24 * 3600);
/// The length of the hourly budget period inside it.
pub const HOUR: Duration = Duration::from_secs(3600);

/// Something a standing loop did.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum LoopEvent {
    /// A run ended.
    Ran {
        /// The schedule.
        schedule: Arc<str>,
        /// Its run number, from 1.
        run: u64,
        /// The run's report.
        report: Box<RunReport>,
        /// Spent in the current period so far (this run included).
        period_spent: NanoUsd,
        /// The period's limit, if any.
        period_limit: Option<NanoUsd>,
    },
    /// A tick was skipped: the previous run was still going.
    Skipped {
        /// The schedule.
        schedule: Arc<str>,
    },
    /// The loop's spend circuit breaker changed state (it is logged, audited and counted too).
    Breaker {
        /// The schedule.
        schedule: Arc<str>,
        /// The new state.
        state: BreakerState,
        /// Why.
        reason: String,
    },
    /// A new budget period began.
    NewPeriod {
        /// The schedule.
        schedule: Arc<str>,
    },
}

/// What a loop did in all.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct LoopSummary {
    /// The schedule.
    pub schedule: String,
    /// Runs started.
    pub runs: u64,
    /// Ticks skipped because the previous run was still going.
    pub skipped: u64,
    /// Ticks skipped because the spend circuit breaker was open (or a trial run was going).
    pub paused: u64,
    /// Times the spend circuit breaker opened.
    pub breaker_trips: u64,
    /// Money spent by its runs, in nano-dollars.
    pub cost_nanousd: u64,
}

fn jittered(jitter: Duration, seed: u64) -> Duration {
    if jitter.is_zero() {
        return Duration::ZERO;
    }
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z ^= z >> 31;
    let nanos = u64::try_from(jitter.as_nanos()).unwrap_or(u64::MAX).max(1);
    Duration::from_nanos(z % nanos)
}

impl Runtime {
    /// Runs every schedule of the topology until `stop` completes; then stops ticking, waits up
    /// to `grace` for runs in flight and cancels those still going. `on_event` sees every run,
    /// skip and new period as it happens.
    pub async fn run_schedules(
        self: &Arc<Self>,
        stop: impl Future<Output = ()>,
        grace: Duration,
        on_event: impl Fn(&LoopEvent) + Send + Sync + 'static,
    ) -> Vec<LoopSummary> {
        let on_event: Arc<dyn Fn(&LoopEvent) + Send + Sync> = Arc::new(on_event);
        let (tx, rx) = tokio::sync::watch::channel(false);
        let loops: Vec<JoinHandle<LoopSummary>> = self
            .topology()
            .schedules()
            .iter()
            .cloned()
            .map(|def| {
                tokio::spawn(run_loop(
                    Arc::clone(self),
                    def,
                    Arc::clone(&on_event),
                    rx.clone(),
                    grace,
                ))
            })
            .collect();
        stop.await;
        let _ = tx.send(true);
        let mut out = Vec::new();
        for l in loops {
            if let Ok(s) = l.await {
                out.push(s);
            }
        }
        out
    }
}

struct InFlight {
    handle: JoinHandle<()>,
    account: Account,
}

async fn run_loop(
    rt: Arc<Runtime>,
    def: ScheduleDef,
    on_event: Arc<dyn Fn(&LoopEvent) + Send + Sync>,
    mut stop: tokio::sync::watch::Receiver<bool>,
    grace: Duration,
) -> LoopSummary {
    let label: Arc<str> = Arc::from(format!("loop:{}", def.name));
    let new_period = || Account::root(TaskId::fresh().0, Arc::clone(&label), def.per_day, None);
    let mut period = new_period();
    let mut period_start = Instant::now();
    // Every run's account is opened under the hour's, itself under the day's: both limits hold.
    let new_hour =
        |day: &Account| day.open_child(TaskId::fresh().0, Arc::clone(&label), def.per_hour, None);
    let mut hour = new_hour(&period);
    let mut hour_start = period_start;
    let mut summary = LoopSummary {
        schedule: def.name.to_string(),
        ..LoopSummary::default()
    };
    let mut next = Instant::now();
    let mut inflight: Option<InFlight> = None;
    let mut spent_before_period = 0u64;
    let breaker = def
        .breaker
        .clone()
        .map(|b| Arc::new(std::sync::Mutex::new(Breaker::new(b))));
    let trips = Arc::new(std::sync::atomic::AtomicU64::new(0));
    if breaker.is_some() {
        metrics::gauge!("baton_loop_breaker_state", "schedule" => def.name.to_string()).set(0.0);
    }
    loop {
        let at = next
            + jittered(
                def.jitter,
                summary.runs ^ u64::from(next.elapsed().subsec_nanos()),
            );
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            () = tokio::time::sleep_until(at) => {}
        }
        next += def.every;
        if Instant::now().duration_since(period_start) >= PERIOD {
            spent_before_period += period.spent().0;
            while Instant::now().duration_since(period_start) >= PERIOD {
                period_start += PERIOD;
            }
            period = new_period();
            hour = new_hour(&period);
            hour_start = period_start;
            on_event(&LoopEvent::NewPeriod {
                schedule: Arc::clone(&def.name),
            });
        }
        if Instant::now().duration_since(hour_start) >= HOUR {
            while Instant::now().duration_since(hour_start) >= HOUR {
                hour_start += HOUR;
            }
            hour = new_hour(&period);
        }
        if let Some(f) = &inflight
            && !f.handle.is_finished()
        {
            match def.overlap {
                Overlap::Skip => {
                    summary.skipped += 1;
                    metrics::counter!("baton_loop_skipped_total", "schedule" => def.name.to_string(), "reason" => "overlap").increment(1);
                    on_event(&LoopEvent::Skipped {
                        schedule: Arc::clone(&def.name),
                    });
                    continue;
                }
                Overlap::Queue => {}
                Overlap::CancelPrevious => f.account.cancel(),
            }
        }
        // Queue (and cancel_previous, once cancelled): wait for the previous run to end first —
        // unless the loop is being stopped meanwhile.
        if let Some(f) = inflight.as_mut() {
            tokio::select! {
                biased;
                _ = stop.changed() => break,
                _ = &mut f.handle => {}
            }
            // Ended: never poll its handle again (a breaker skip may come before the next run).
            inflight = None;
        }
        if let Some(b) = &breaker {
            let admit = b.lock().map_or(Admit::Run, |mut b| b.admit(Instant::now()));
            match admit {
                Admit::Run => {}
                Admit::Trial => announce(
                    &rt,
                    &on_event,
                    &def.name,
                    &Transition {
                        to: BreakerState::HalfOpen,
                        reason: "the cool-down has passed: one trial run".into(),
                    },
                ),
                Admit::Skip => {
                    summary.paused += 1;
                    metrics::counter!("baton_loop_skipped_total", "schedule" => def.name.to_string(), "reason" => "breaker").increment(1);
                    continue;
                }
            }
        }
        summary.runs += 1;
        let (envelope, account) = rt.prepare(def.task.clone(), def.budget.clone(), Some(&hour));
        let (rt2, events, name, run, per) = (
            Arc::clone(&rt),
            Arc::clone(&on_event),
            Arc::clone(&def.name),
            summary.runs,
            period.clone(),
        );
        let acct = account.clone();
        let (breaker2, trips2) = (breaker.clone(), Arc::clone(&trips));
        let handle = tokio::spawn(async move {
            if let Ok(done) = rt2.submit_prepared(envelope, acct).await {
                let snap = done.account.snapshot();
                let outcome = done.result.outcome;
                metrics::counter!("baton_loop_runs_total", "schedule" => name.to_string(), "outcome" => outcome.to_string()).increment(1);
                let (answer, error) = match done.result.outcome {
                    baton_core::Outcome::Completed => (Some(done.result.text), None),
                    _ => (None, Some(done.result.text)),
                };
                let report = RunReport::from_ledger(&snap, done.result.outcome, answer, error);
                events(&LoopEvent::Ran {
                    schedule: Arc::clone(&name),
                    run,
                    report: Box::new(report),
                    period_spent: per.spent(),
                    period_limit: per.cost_limit(),
                });
                if let Some(b) = &breaker2 {
                    let change = b.lock().ok().and_then(|mut b| {
                        b.record(
                            Instant::now(),
                            done.account.spent().0,
                            outcome == baton_core::Outcome::Completed,
                        )
                    });
                    if let Some(t) = change {
                        if t.to == BreakerState::Open {
                            trips2.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        announce(&rt2, &events, &name, &t);
                    }
                }
            }
        });
        inflight = Some(InFlight { handle, account });
    }
    // Graceful stop: let the run in flight finish for up to `grace`, then cancel it.
    if let Some(mut f) = inflight
        && tokio::time::timeout(grace, &mut f.handle).await.is_err()
    {
        f.account.cancel();
        let _ = f.handle.await;
    }
    summary.cost_nanousd = spent_before_period + period.spent().0;
    summary.breaker_trips = trips.load(std::sync::atomic::Ordering::Relaxed);
    summary
}

/// A breaker's change of state: logged, audited (through the observers), counted, and passed on.
fn announce(
    rt: &Runtime,
    on_event: &Arc<dyn Fn(&LoopEvent) + Send + Sync>,
    schedule: &Arc<str>,
    t: &Transition,
) {
    let state = t.to.as_str();
    if t.to == BreakerState::Open {
        tracing::warn!(schedule = %schedule, reason = %t.reason, "spend circuit breaker opened");
        metrics::counter!("baton_loop_breaker_trips_total", "schedule" => schedule.to_string())
            .increment(1);
    } else {
        tracing::info!(schedule = %schedule, state, reason = %t.reason, "spend circuit breaker");
    }
    metrics::gauge!("baton_loop_breaker_state", "schedule" => schedule.to_string())
        .set(t.to.gauge());
    rt.observe(&Event::Breaker {
        schedule,
        state,
        reason: &t.reason,
    });
    on_event(&LoopEvent::Breaker {
        schedule: Arc::clone(schedule),
        state: t.to,
        reason: t.reason.clone(),
    });
}
