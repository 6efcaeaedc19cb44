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

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use baton_core::{Account, NanoUsd, TaskId};
use baton_topologies::{Cadence, OnInterrupted, Overlap, ScheduleDef};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::breaker::{Admit, Breaker, BreakerState, Transition};
use crate::observer::Event;
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
                tokio::spawn(run_loop(
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

fn breaker_field(b: &Breaker, clock: &LoopClock) -> Option<(BreakerState, u64)> {
    match b.state() {
        BreakerState::Closed => None,
        s => Some((s, clock.wall(b.opened_at()))),
    }
}

struct InFlight {
    handle: JoinHandle<()>,
    account: Account,
}

/// Recovers a loop's state: runs left `running` become `interrupted`, charged their limit.
fn recover(store: &LoopStore, name: &str) -> (LoopState, Vec<u64>) {
    let mut state = match store.load(name) {
        Ok(s) => s.unwrap_or_default(),
        Err(e) => {
            tracing::error!("{e}");
            LoopState::default()
        }
    };
    let mut interrupted = Vec::new();
    for (n, mut rec) in store.runs(name).unwrap_or_default() {
        if rec.outcome == "running" {
            rec.outcome = "interrupted".into();
            rec.cost_nanousd = rec.limit_nanousd.unwrap_or(0);
            if rec.started_ms >= state.day_started_ms {
                state.day_spent = state.day_spent.saturating_add(rec.cost_nanousd);
            }
            if rec.started_ms >= state.hour_started_ms {
                state.hour_spent = state.hour_spent.saturating_add(rec.cost_nanousd);
            }
            if let Err(e) = store.save(name, &state, Some((n, &rec))) {
                tracing::error!("{e}");
            }
            interrupted.push(n);
        }
    }
    (state, interrupted)
}

async fn run_loop(
    rt: Arc<Runtime>,
    def: ScheduleDef,
    store: Option<Arc<LoopStore>>,
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
    // The runs' scoreboard sums, added as each run ends.
    let scores = Arc::new(std::sync::Mutex::new(
        crate::scoreboard::ScoreSums::default(),
    ));
    let mut summary = LoopSummary {
        schedule: def.name.to_string(),
        ..LoopSummary::default()
    };
    let clock = LoopClock::start();
    // Every series of the loop is born at zero: a panel shows 0 rather than "No data", and the
    // first increment is a visible rise to `rate()`.
    for reason in ["overlap", "breaker", "paused", "runtime_down"] {
        metrics::counter!("baton_loop_skipped_total", "schedule" => def.name.to_string(), "reason" => reason).absolute(0);
    }
    for outcome in baton_core::Outcome::ALL
        .iter()
        .map(|o| o.as_str())
        .chain(["refused"])
    {
        metrics::counter!("baton_loop_runs_total", "schedule" => def.name.to_string(), "outcome" => outcome).absolute(0);
    }
    if def.breaker.is_some() {
        metrics::counter!("baton_loop_breaker_trips_total", "schedule" => def.name.to_string())
            .absolute(0);
        metrics::gauge!("baton_loop_breaker_state", "schedule" => def.name.to_string()).set(0.0);
    }
    // `every` runs at once, then every period; cron at its next time.
    let mut next = match &def.cadence {
        Cadence::Every(_) => Some(Instant::now()),
        Cadence::Cron(_) => clock.after(&def.cadence, Instant::now()),
    };
    // An interrupted run to take up again at once (`on_interrupted: resume`).
    let mut resume: Option<u64> = None;
    let mut inflight: Option<InFlight> = None;
    let mut spent_before_period = 0u64;
    let mut breaker = def.breaker.clone().map(Breaker::new);
    // With a state file: take up the period, the run counter and the breaker where they were.
    let mut run_base = 0u64;
    // The period and hour starts as stored (what a run's end compares against).
    let (mut day_mark, mut hour_mark) = (0u64, 0u64);
    let mut carried = 0u64;
    let durable = store.map(|store| {
        let (mut st, interrupted) = recover(&store, &def.name);
        let now = now_ms();
        let day_ms = u64::try_from(PERIOD.as_millis()).unwrap_or(u64::MAX);
        let hour_ms = u64::try_from(HOUR.as_millis()).unwrap_or(u64::MAX);
        run_base = st.runs;
        summary.interrupted = interrupted.len() as u64;
        if def.on_interrupted == OnInterrupted::Resume {
            resume = interrupted.iter().max().copied();
        }
        if st.day_started_ms > 0 && now.saturating_sub(st.day_started_ms) < day_ms {
            period_start = clock.instant(st.day_started_ms);
            let mut day_rest = st.day_spent;
            if st.hour_started_ms >= st.day_started_ms
                && now.saturating_sub(st.hour_started_ms) < hour_ms
            {
                hour_start = clock.instant(st.hour_started_ms);
                hour.carry(NanoUsd(st.hour_spent));
                day_rest = day_rest.saturating_sub(st.hour_spent);
            } else {
                st.hour_started_ms = clock.wall(period_start);
                st.hour_spent = 0;
            }
            period.carry(NanoUsd(day_rest));
            carried = period.spent().0;
        } else {
            st.day_started_ms = now;
            st.day_spent = 0;
            st.hour_started_ms = now;
            st.hour_spent = 0;
        }
        if let (Some(def), Some((_, opened))) = (def.breaker.clone(), st.breaker) {
            breaker = Some(Breaker::restored(def, clock.instant(opened)));
        }
        if st.runs > 0 || !interrupted.is_empty() {
            on_event(&LoopEvent::Resumed {
                schedule: Arc::clone(&def.name),
                runs_before: st.runs,
                period_spent: period.spent(),
                interrupted,
            });
        }
        (day_mark, hour_mark) = (st.day_started_ms, st.hour_started_ms);
        let d = Durable {
            store,
            name: Arc::clone(&def.name),
            state: std::sync::Mutex::new(st),
        };
        d.save(|_| {}, None);
        Arc::new(d)
    });
    let breaker = breaker.map(|b| Arc::new(std::sync::Mutex::new(b)));
    if let Some(b) = &breaker {
        let g = b.lock().map_or(0.0, |b| b.state().gauge());
        metrics::gauge!("baton_loop_breaker_state", "schedule" => def.name.to_string()).set(g);
    }
    loop {
        // A run to resume goes first, at once; then the schedule's own times (with jitter).
        let due = match (resume, next) {
            (Some(_), _) => Instant::now(),
            (None, Some(due)) => due,
            // A cron expression with no time left: wait to be stopped.
            (None, None) => {
                let _ = stop.changed().await;
                break;
            }
        };
        let at = if resume.is_some() {
            due
        } else {
            due + jittered(
                def.jitter,
                summary.runs ^ u64::from(due.elapsed().subsec_nanos()),
            )
        };
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            () = tokio::time::sleep_until(at) => {}
        }
        let tick_ms = clock.wall(due);
        // A resumed run stands for the first tick of `every` (due at once anyway), not for a
        // cron time, which is still to come.
        if resume.is_none() || matches!(def.cadence, Cadence::Every(_)) {
            next = next.and_then(|n| clock.after(&def.cadence, n));
        }
        if Instant::now().duration_since(period_start) >= PERIOD {
            spent_before_period += period.spent().0;
            while Instant::now().duration_since(period_start) >= PERIOD {
                period_start += PERIOD;
            }
            period = new_period();
            hour = new_hour(&period);
            hour_start = period_start;
            if let Some(d) = &durable {
                let started = clock.wall(period_start);
                (day_mark, hour_mark) = (started, started);
                d.save(
                    |s| {
                        (s.day_started_ms, s.day_spent) = (started, 0);
                        (s.hour_started_ms, s.hour_spent) = (started, 0);
                    },
                    None,
                );
            }
            on_event(&LoopEvent::NewPeriod {
                schedule: Arc::clone(&def.name),
            });
        }
        if Instant::now().duration_since(hour_start) >= HOUR {
            while Instant::now().duration_since(hour_start) >= HOUR {
                hour_start += HOUR;
            }
            hour = new_hour(&period);
            if let Some(d) = &durable {
                let started = clock.wall(hour_start);
                hour_mark = started;
                d.save(|s| (s.hour_started_ms, s.hour_spent) = (started, 0), None);
            }
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
        if rt.schedule_paused(&def.name) {
            if let Some(n) = resume.take() {
                tracing::warn!(schedule = %def.name, run = n, "the loop is paused: the interrupted run is not resumed");
            }
            summary.held += 1;
            metrics::counter!("baton_loop_skipped_total", "schedule" => def.name.to_string(), "reason" => "paused").increment(1);
            continue;
        }
        if let Some(b) = &breaker {
            let admit = b.lock().map_or(Admit::Run, |mut b| b.admit(Instant::now()));
            match admit {
                Admit::Run => {}
                Admit::Trial => {
                    if let (Some(d), Ok(b)) = (&durable, b.lock()) {
                        let field = breaker_field(&b, &clock);
                        d.save(|s| s.breaker = field, None);
                    }
                    announce(
                        &rt,
                        &on_event,
                        &def.name,
                        &Transition {
                            to: BreakerState::HalfOpen,
                            reason: "the cool-down has passed: one trial run".into(),
                        },
                    );
                }
                Admit::Skip => {
                    if let Some(n) = resume.take() {
                        tracing::warn!(schedule = %def.name, run = n, "the spend circuit breaker is open: the interrupted run is not resumed");
                    }
                    summary.paused += 1;
                    metrics::counter!("baton_loop_skipped_total", "schedule" => def.name.to_string(), "reason" => "breaker").increment(1);
                    continue;
                }
            }
        }
        // A runtime whose conductor gave up takes no more tasks: the tick is refused (recorded,
        // shown with the reason, not charged) and the loop stops.
        if let Some(why) = rt.down().map(str::to_string) {
            summary.refused += 1;
            summary.runtime_down = Some(why.clone());
            metrics::counter!("baton_loop_skipped_total", "schedule" => def.name.to_string(), "reason" => "runtime_down").increment(1);
            tracing::error!(schedule = %def.name, reason = %why, "the runtime is down: the loop stops");
            on_event(&LoopEvent::Refused {
                schedule: Arc::clone(&def.name),
                run: None,
                reason: why.clone(),
            });
            break;
        }
        summary.runs += 1;
        let run = run_base + summary.runs;
        let (envelope, account) = rt.prepare(def.task.clone(), def.budget.clone(), Some(&hour));
        // The most this run can spend: what an interrupted run is charged.
        let worst = account.remaining_cost();
        let mut record = RunRecord {
            outcome: "running".into(),
            cost_nanousd: 0,
            limit_nanousd: (worst.0 < u64::MAX).then_some(worst.0),
            started_ms: now_ms(),
            resumes: resume.take(),
            task: envelope.task.0,
        };
        let resumes = record.resumes;
        rt.observe(&Event::RunStarted {
            schedule: &def.name,
            run,
            task: envelope.task.0,
            limit_nanousd: record.limit_nanousd,
            resumes,
        });
        if let Some(d) = &durable {
            d.save(|s| s.runs = run, Some((run, &record)));
        }
        let (rt2, events, name, per, hour2, durable2) = (
            Arc::clone(&rt),
            Arc::clone(&on_event),
            Arc::clone(&def.name),
            period.clone(),
            hour.clone(),
            durable.clone(),
        );
        let (day_started, hour_started) = (day_mark, hour_mark);
        let acct = account.clone();
        let breaker2 = breaker.clone();
        let value2 = def.value.clone();
        let scores2 = Arc::clone(&scores);
        let handle = tokio::spawn(async move {
            let done = match rt2.submit_prepared(envelope, acct).await {
                Ok(done) => done,
                Err(e) => {
                    // The runtime went down between the tick and the start: the run is on the
                    // record as refused, charged nothing (not left `running`, to be charged its
                    // worst case at the next start).
                    metrics::counter!("baton_loop_runs_total", "schedule" => name.to_string(), "outcome" => "refused").increment(1);
                    if let Some(d) = &durable2 {
                        record.outcome = "refused".into();
                        d.save(|_| {}, Some((run, &record)));
                    }
                    events(&LoopEvent::Refused {
                        schedule: Arc::clone(&name),
                        run: Some(run),
                        reason: e.to_string(),
                    });
                    return;
                }
            };
            {
                let snap = done.account.snapshot();
                let outcome = done.result.outcome;
                metrics::counter!("baton_loop_runs_total", "schedule" => name.to_string(), "outcome" => outcome.to_string()).increment(1);
                let (answer, error) = match done.result.outcome {
                    baton_core::Outcome::Completed => (Some(done.result.text), None),
                    _ => (None, Some(done.result.text)),
                };
                let mut report = RunReport::from_ledger(&snap, done.result.outcome, answer, error);
                // The schedule's own value, for a completed run (its agents' is in the tasks).
                if let (Some(v), Some(a)) = (&value2, &report.answer) {
                    report.scoreboard.add_value(v.of(a));
                }
                crate::scoreboard::count_workflow(&name, &report.scoreboard);
                if let Ok(mut sums) = scores2.lock() {
                    sums.absorb(&report.scoreboard.sums);
                }
                let mut field = None;
                let change = breaker2.as_ref().and_then(|b| {
                    let mut b = b.lock().ok()?;
                    let t = b.record(
                        Instant::now(),
                        done.account.spent().0,
                        report.scoreboard.value_nanousd,
                        outcome == baton_core::Outcome::Completed,
                    );
                    if let Some(roi) = b.roi() {
                        metrics::gauge!("baton_loop_roi", "schedule" => name.to_string()).set(roi);
                    }
                    field = Some(breaker_field(&b, &clock));
                    t
                });
                // Recorded before it is reported: what was printed is never lost.
                if let Some(d) = &durable2 {
                    record.outcome = outcome.to_string();
                    record.cost_nanousd = done.account.spent().0;
                    d.save(
                        |s| {
                            // Unless a new day or hour began meanwhile (its spend is its own).
                            if s.day_started_ms == day_started {
                                s.day_spent = per.spent().0;
                            }
                            if s.hour_started_ms == hour_started {
                                s.hour_spent = hour2.spent().0;
                            }
                            if let Some(f) = field {
                                s.breaker = f;
                            }
                        },
                        Some((run, &record)),
                    );
                }
                events(&LoopEvent::Ran {
                    schedule: Arc::clone(&name),
                    run,
                    report: Box::new(report),
                    period_spent: per.spent(),
                    period_limit: per.cost_limit(),
                    hour: hour2.cost_limit().map(|l| (hour2.spent(), l)),
                    tick_ms,
                    resumes,
                });
                if let Some(t) = change {
                    announce(&rt2, &events, &name, &t);
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
    // Stopped because the runtime went down: said once, with the reason (the next tick would
    // have been refused).
    if let (None, Some(why)) = (&summary.runtime_down, rt.down()) {
        summary.runtime_down = Some(why.to_string());
        summary.refused += 1;
        metrics::counter!("baton_loop_skipped_total", "schedule" => def.name.to_string(), "reason" => "runtime_down").increment(1);
        on_event(&LoopEvent::Refused {
            schedule: Arc::clone(&def.name),
            run: None,
            reason: why.to_string(),
        });
    }
    summary.cost_nanousd = (spent_before_period + period.spent().0).saturating_sub(carried);
    summary.breaker_trips = breaker
        .as_ref()
        .and_then(|b| b.lock().ok().map(|b| b.trips()))
        .unwrap_or(0);
    summary.scoreboard = scores
        .lock()
        .ok()
        .filter(|s| s.workflows > 0)
        .map(|s| crate::scoreboard::Scoreboard::from_sums(s.clone()));
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
