//! Standing loops: each schedule of the topology gives the root agent its task every `every`
//! (or at the times of its `cron` expression, in its time zone),
//! with a per-run budget and per-period (24 h, and 1 h inside it) budgets enforced by the ledger:
//! every run's account is opened under the hour's account, itself under the day's, so a run that
//! would take either past its limit is refused before it spends, like any other budget.
//!
//! Ticks that find the previous run still going follow the schedule's `overlap` (skip, queue one,
//! or cancel the previous run). Stopping (the caller's `stop` future: `--for`, Ctrl-C) ends the
//! ticking, lets runs in flight finish for up to `grace`, then cancels them: every run still ends
//! with exactly one recorded outcome.

mod runner;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use baton_core::NanoUsd;
use baton_topologies::Cadence;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::breaker::BreakerState;
use crate::report::RunReport;
use crate::runtime::Runtime;
use crate::store::{LoopState, LoopStore, RunRecord, StoreError, now_ms};

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
        /// Spent in the current hour so far (this run included), and the hour's limit, when the
        /// loop has `per_hour_usd`.
        hour: Option<(NanoUsd, NanoUsd)>,
        /// When the run was due (Unix milliseconds): the tick of `every` or the cron time,
        /// before jitter.
        tick_ms: u64,
        /// The interrupted run this one takes up again (`on_interrupted: resume`), if any.
        resumes: Option<u64>,
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
    /// The loop took up its state from the state file after a restart.
    Resumed {
        /// The schedule.
        schedule: Arc<str>,
        /// Runs recorded before (the next run's number is one more).
        runs_before: u64,
        /// The current period's spend carried over, interrupted runs' charges included.
        period_spent: NanoUsd,
        /// Runs that were going when the process died: recorded `interrupted`, charged their
        /// worst case.
        interrupted: Vec<u64>,
    },
    /// A new budget period began.
    NewPeriod {
        /// The schedule.
        schedule: Arc<str>,
    },
    /// A tick (or a run about to start) was refused: the runtime is down (its conductor gave
    /// up). Nothing was charged. The loop stops: the runtime does not come back in this process.
    Refused {
        /// The schedule.
        schedule: Arc<str>,
        /// The run number it would have had, when it had been admitted.
        run: Option<u64>,
        /// Why the runtime is down.
        reason: String,
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
    /// Ticks skipped because the loop was paused by hand ([`Runtime::pause_schedule`]).
    pub held: u64,
    /// Times the spend circuit breaker opened.
    pub breaker_trips: u64,
    /// Money spent by its runs in this process, in nano-dollars.
    pub cost_nanousd: u64,
    /// Runs found interrupted in the state file at start.
    pub interrupted: u64,
    /// Ticks refused because the runtime was down (nothing charged).
    pub refused: u64,
    /// Ticks another replica claimed (loops shared through a ledger): run there, not here.
    pub elsewhere: u64,
    /// Ticks that could not be claimed (the shared ledger was unreachable): run nowhere.
    pub unclaimed: u64,
    /// Why the runtime went down, when it did: the loop stopped then.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime_down: Option<String>,
    /// The scoreboard of its runs in this process (value, ROI, energy per run).
    pub scoreboard: Option<crate::scoreboard::Scoreboard>,
}

fn jittered(jitter: Duration, seed: u64) -> Duration {
    if jitter.is_zero() {
        return Duration::ZERO;
    }
    let nanos = u64::try_from(jitter.as_nanos()).unwrap_or(u64::MAX).max(1);
    Duration::from_nanos(baton_core::splitmix64(seed) % nanos)
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
        self.run_schedules_inner(None, stop, grace, Arc::new(on_event))
            .await
    }

    /// [`Runtime::run_schedules`], keeping the loops' state in `store`: the day's and hour's
    /// spend, the run counter, the breaker and every run's outcome survive the process. Runs the
    /// store shows `running` (the process died during them) are first recorded `interrupted` and
    /// charged their per-run cost limit, and reported with [`LoopEvent::Resumed`].
    pub async fn run_schedules_durable(
        self: &Arc<Self>,
        store: Arc<LoopStore>,
        stop: impl Future<Output = ()>,
        grace: Duration,
        on_event: impl Fn(&LoopEvent) + Send + Sync + 'static,
    ) -> Result<Vec<LoopSummary>, StoreError> {
        // Read everything first, so that a broken state file stops us before any run.
        for def in self.topology().schedules() {
            store.load(&def.name)?;
            store.runs(&def.name)?;
        }
        Ok(self
            .run_schedules_inner(Some(store), stop, grace, Arc::new(on_event))
            .await)
    }

    async fn run_schedules_inner(
        self: &Arc<Self>,
        store: Option<Arc<LoopStore>>,
        stop: impl Future<Output = ()>,
        grace: Duration,
        on_event: Arc<dyn Fn(&LoopEvent) + Send + Sync>,
    ) -> Vec<LoopSummary> {
        let (tx, rx) = tokio::sync::watch::channel(false);
        let loops: Vec<JoinHandle<LoopSummary>> = self
            .topology()
            .schedules()
            .iter()
            .cloned()
            .map(|def| {
                tokio::spawn(runner::run_loop(
                    Arc::clone(self),
                    def,
                    store.clone(),
                    Arc::clone(&on_event),
                    rx.clone(),
                    grace,
                ))
            })
            .collect();
        // Until told to stop — or until the runtime goes down (its conductor gave up), which
        // ends every loop at once: no later tick could run.
        tokio::select! {
            () = stop => {}
            () = self.gone_down() => {}
        }
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

/// A loop's state file, and the state it keeps there.
struct Durable {
    store: Arc<LoopStore>,
    name: Arc<str>,
    state: std::sync::Mutex<LoopState>,
}

impl Durable {
    /// Updates the state and writes it, with a run's record if given (one transaction).
    fn save(&self, update: impl FnOnce(&mut LoopState), run: Option<(u64, &RunRecord)>) {
        let Ok(mut s) = self.state.lock() else {
            return;
        };
        update(&mut s);
        if let Err(e) = self.store.save(&self.name, &s, run) {
            tracing::error!("{e}");
        }
    }
}

/// A loop's wall clock, read off tokio's clock from one fixed point: cron times become
/// `Instant`s the loop sleeps until, stored times (Unix ms) become `Instant`s and back, and tests
/// with paused time see them all move together.
#[derive(Clone, Copy)]
struct LoopClock {
    origin: Instant,
    origin_ms: u64,
}

impl LoopClock {
    fn start() -> Self {
        Self {
            origin: Instant::now(),
            origin_ms: now_ms(),
        }
    }

    /// The wall-clock time (Unix ms) of `at`, before or after the origin.
    fn wall(&self, at: Instant) -> u64 {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        if at >= self.origin {
            self.origin_ms.saturating_add(ms(at - self.origin))
        } else {
            self.origin_ms.saturating_sub(ms(self.origin - at))
        }
    }

    /// The `Instant` of a wall-clock time (Unix ms) not after the origin (the origin itself if
    /// the clock cannot go back that far).
    fn instant(&self, ms: u64) -> Instant {
        self.origin
            .checked_sub(Duration::from_millis(self.origin_ms.saturating_sub(ms)))
            .unwrap_or(self.origin)
    }

    /// When the run after one due at `after` is due; `None` when a cron expression has no
    /// later time.
    fn after(&self, cadence: &Cadence, after: Instant) -> Option<Instant> {
        match cadence {
            Cadence::Every(d) => after.checked_add(*d),
            Cadence::Cron(c) => {
                let from = jiff::Timestamp::from_millisecond(
                    i64::try_from(self.wall(after)).unwrap_or(i64::MAX),
                )
                .ok()?;
                let next = c.next_after(from)?;
                let ms = u64::try_from(next.as_millisecond()).ok()?;
                self.origin
                    .checked_add(Duration::from_millis(ms.saturating_sub(self.origin_ms)))
            }
        }
    }
}
