//! One standing loop, in named phases: recover its state, wait for a tick, roll its day and hour
//! over, admit the tick (overlap, pause, breaker, a runtime that is down), start a run, and —
//! in the run's own task — finish it (report, breaker, state file, events); then stop.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use baton_core::{Account, Envelope, NanoUsd, Outcome, TaskId};
use baton_topologies::{Cadence, OnInterrupted, Overlap, ScheduleDef, ValueDef};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{Durable, HOUR, LoopClock, LoopEvent, LoopSummary, PERIOD, jittered};
use crate::breaker::{Admit, Breaker, BreakerState, Transition};
use crate::observer::Event;
use crate::report::RunReport;
use crate::runtime::{Runtime, TaskRun};
use crate::scoreboard::ScoreSums;
use crate::store::{LoopState, LoopStore, RunRecord, now_ms};

/// Where the loop's events go.
type OnEvent = Arc<dyn Fn(&LoopEvent) + Send + Sync>;

/// Runs one schedule until `stop` changes (or the runtime goes down), then lets the run in flight
/// finish for up to `grace` and cancels it after that.
pub(super) async fn run_loop(
    rt: Arc<Runtime>,
    def: ScheduleDef,
    store: Option<Arc<LoopStore>>,
    on_event: OnEvent,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
) -> LoopSummary {
    let mut runner = LoopRunner::new(rt, def, on_event);
    if let Some(store) = store {
        runner.recover(store);
    }
    runner.show_breaker();
    while let Some(tick_ms) = runner.wait_for_tick(&mut stop).await {
        // Every replica hears the others' runs at every tick, claimed or not, so that its
        // breaker judges them close to when they ended.
        runner.hear_others().await;
        if !runner.claim(tick_ms).await {
            continue;
        }
        runner.roll_windows();
        match runner.admit(&mut stop).await {
            Admission::Run => runner.start_run(tick_ms),
            Admission::Skip => {}
            Admission::Stop => break,
        }
    }
    runner.stop(grace).await
}

/// What a tick may do.
enum Admission {
    /// Start a run.
    Run,
    /// Let this tick pass (counted as skipped, held or paused).
    Skip,
    /// End the loop.
    Stop,
}

struct InFlight {
    handle: JoinHandle<()>,
    account: Account,
}

/// The loop's spend windows: the day's account, and the hour's inside it. Every run's account is
/// opened under the hour's, so both limits hold.
struct Windows {
    label: Arc<str>,
    per_day: Option<NanoUsd>,
    per_hour: Option<NanoUsd>,
    day: Account,
    day_start: Instant,
    hour: Account,
    hour_start: Instant,
    /// The day's and hour's starts as stored (what a run's end compares against).
    day_mark: u64,
    hour_mark: u64,
    /// Spent in the days this process closed.
    spent_before: u64,
    /// Spend of an earlier process carried into the current day at start (not this process's).
    carried: u64,
}

impl Windows {
    fn new(label: Arc<str>, per_day: Option<NanoUsd>, per_hour: Option<NanoUsd>) -> Windows {
        let day = Account::root(TaskId::fresh().0, Arc::clone(&label), per_day, None);
        let hour = day.open_child(TaskId::fresh().0, Arc::clone(&label), per_hour, None);
        let now = Instant::now();
        Windows {
            label,
            per_day,
            per_hour,
            day,
            day_start: now,
            hour,
            hour_start: now,
            day_mark: 0,
            hour_mark: 0,
            spent_before: 0,
            carried: 0,
        }
    }

    fn open_hour(&mut self) {
        self.hour = self.day.open_child(
            TaskId::fresh().0,
            Arc::clone(&self.label),
            self.per_hour,
            None,
        );
    }

    fn open_day(&mut self) {
        self.day = Account::root(
            TaskId::fresh().0,
            Arc::clone(&self.label),
            self.per_day,
            None,
        );
        self.open_hour();
        self.hour_start = self.day_start;
    }
}

/// One loop's state between ticks.
struct LoopRunner {
    rt: Arc<Runtime>,
    def: ScheduleDef,
    on_event: OnEvent,
    clock: LoopClock,
    windows: Windows,
    summary: LoopSummary,
    /// The runs' scoreboard sums, added as each run ends.
    scores: Arc<Mutex<ScoreSums>>,
    /// When the schedule's next tick is due (`None`: a cron expression with no time left).
    next: Option<Instant>,
    /// An interrupted run to take up again at once (`on_interrupted: resume`).
    resume: Option<u64>,
    /// With ticks claimed among replicas: how far this replica has heard of the others' runs
    /// (`None` until the first tick: runs before this replica started are not judged).
    runs_heard: Option<u64>,
    inflight: Option<InFlight>,
    breaker: Option<Arc<Mutex<Breaker>>>,
    /// Runs numbered before this process (from the state file).
    run_base: u64,
    durable: Option<Arc<Durable>>,
}

impl LoopRunner {
    fn new(rt: Arc<Runtime>, def: ScheduleDef, on_event: OnEvent) -> LoopRunner {
        let label: Arc<str> = Arc::from(format!("loop:{}", def.name));
        let clock = LoopClock::start();
        zero_series(&def, rt.tick_claims().is_some());
        // `every` runs at once, then every period; cron at its next time. With ticks claimed
        // among replicas, `every` keeps to the clock's multiples of the period (the current one
        // at once), so that every replica names the same ticks.
        let next = match &def.cadence {
            Cadence::Every(d) if rt.tick_claims().is_some() => {
                let period = u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1);
                let now = clock.wall(Instant::now());
                Some(clock.instant(now - now % period))
            }
            Cadence::Every(_) => Some(Instant::now()),
            Cadence::Cron(_) => clock.after(&def.cadence, Instant::now()),
        };
        LoopRunner {
            windows: Windows::new(label, def.per_day, def.per_hour),
            summary: LoopSummary {
                schedule: def.name.to_string(),
                ..LoopSummary::default()
            },
            breaker: def
                .breaker
                .clone()
                .map(|b| Arc::new(Mutex::new(Breaker::new(b)))),
            rt,
            def,
            on_event,
            clock,
            scores: Arc::new(Mutex::new(ScoreSums::default())),
            next,
            resume: None,
            runs_heard: None,
            inflight: None,
            run_base: 0,
            durable: None,
        }
    }

    /// Phase 1, with a state file: runs left `running` become `interrupted` (charged their
    /// limit); the day, the hour, the run counter and the breaker are taken up where they were.
    fn recover(&mut self, store: Arc<LoopStore>) {
        let (mut st, interrupted) = recover(&store, &self.def.name);
        let now = now_ms();
        let day_ms = u64::try_from(PERIOD.as_millis()).unwrap_or(u64::MAX);
        let hour_ms = u64::try_from(HOUR.as_millis()).unwrap_or(u64::MAX);
        self.run_base = st.runs;
        self.summary.interrupted = interrupted.len() as u64;
        if self.def.on_interrupted == OnInterrupted::Resume {
            self.resume = interrupted.iter().max().copied();
        }
        let w = &mut self.windows;
        if st.day_started_ms > 0 && now.saturating_sub(st.day_started_ms) < day_ms {
            w.day_start = self.clock.instant(st.day_started_ms);
            w.hour_start = w.day_start;
            let mut day_rest = st.day_spent;
            if st.hour_started_ms >= st.day_started_ms
                && now.saturating_sub(st.hour_started_ms) < hour_ms
            {
                w.hour_start = self.clock.instant(st.hour_started_ms);
                w.hour.carry(NanoUsd(st.hour_spent));
                day_rest = day_rest.saturating_sub(st.hour_spent);
            } else {
                st.hour_started_ms = self.clock.wall(w.day_start);
                st.hour_spent = 0;
            }
            w.day.carry(NanoUsd(day_rest));
            w.carried = w.day.spent().0;
        } else {
            st.day_started_ms = now;
            st.day_spent = 0;
            st.hour_started_ms = now;
            st.hour_spent = 0;
        }
        if let (Some(def), Some((_, opened))) = (self.def.breaker.clone(), st.breaker) {
            self.breaker = Some(Arc::new(Mutex::new(Breaker::restored(
                def,
                self.clock.instant(opened),
            ))));
        }
        if st.runs > 0 || !interrupted.is_empty() {
            (self.on_event)(&LoopEvent::Resumed {
                schedule: Arc::clone(&self.def.name),
                runs_before: st.runs,
                period_spent: w.day.spent(),
                interrupted,
            });
        }
        (w.day_mark, w.hour_mark) = (st.day_started_ms, st.hour_started_ms);
        let d = Durable {
            store,
            name: Arc::clone(&self.def.name),
            state: Mutex::new(st),
        };
        d.save(|_| {}, None);
        self.durable = Some(Arc::new(d));
    }

    /// The breaker's state on its gauge, from the start (a restored open breaker shows open).
    fn show_breaker(&self) {
        if let Some(b) = &self.breaker {
            let g = b.lock().map_or(0.0, |b| b.state().gauge());
            metrics::gauge!("baton_loop_breaker_state", "schedule" => self.def.name.to_string())
                .set(g);
        }
    }

    /// Phase 2: waits for the next tick — a run to resume at once, then the schedule's own times
    /// (with jitter) — and returns its time (Unix ms); `None` when the loop is told to stop.
    async fn wait_for_tick(&mut self, stop: &mut watch::Receiver<bool>) -> Option<u64> {
        let due = match (self.resume, self.next) {
            (Some(_), _) => Instant::now(),
            (None, Some(due)) => due,
            // A cron expression with no time left: wait to be stopped.
            (None, None) => {
                let _ = stop.changed().await;
                return None;
            }
        };
        let at = if self.resume.is_some() {
            due
        } else {
            due + jittered(
                self.def.jitter,
                self.summary.runs ^ u64::from(due.elapsed().subsec_nanos()),
            )
        };
        tokio::select! {
            biased;
            _ = stop.changed() => return None,
            () = tokio::time::sleep_until(at) => {}
        }
        // A resumed run stands for the first tick of `every` (due at once anyway), not for a
        // cron time, which is still to come.
        if self.resume.is_none() || matches!(self.def.cadence, Cadence::Every(_)) {
            let next = self
                .next
                .and_then(|n| self.clock.after(&self.def.cadence, n));
            self.next = next;
        }
        Some(self.clock.wall(due))
    }

    /// Phase 2½, with ticks claimed among replicas: whether this replica runs the tick due at
    /// `tick_ms`. A tick another replica claimed, or that could not be claimed (the store is
    /// unreachable: better a tick not run than run twice), is counted as skipped.
    async fn claim(&mut self, tick_ms: u64) -> bool {
        let Some(claims) = self.rt.tick_claims() else {
            return true;
        };
        match claims.claim(&self.def.name, tick_ms).await {
            Ok(true) => true,
            Ok(false) => {
                self.summary.elsewhere += 1;
                self.count_skip("elsewhere");
                false
            }
            Err(e) => {
                tracing::error!(schedule = %self.def.name, "the tick due at {tick_ms} ms could not be claimed, so it is not run: {e}");
                self.summary.unclaimed += 1;
                self.count_skip("unclaimed");
                false
            }
        }
    }

    /// With ticks claimed among replicas and a breaker: the runs other replicas ended since the
    /// last tick are judged by this replica's breaker too, in the order they ended, so that the
    /// fleet's breaker opens on the fleet's spend (each replica judges the same runs).
    async fn hear_others(&mut self) {
        let (Some(claims), Some(b)) = (self.rt.tick_claims(), &self.breaker) else {
            return;
        };
        let heard = claims.others_ran(&self.def.name, self.runs_heard).await;
        let (runs, cursor) = match heard {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(schedule = %self.def.name, "other replicas' runs could not be read for the breaker: {e}");
                return;
            }
        };
        self.runs_heard = Some(cursor);
        for run in runs {
            let change = b.lock().ok().and_then(|mut b| {
                b.record(
                    Instant::now(),
                    run.cost_nanousd,
                    run.value_nanousd,
                    run.completed,
                )
            });
            if let Some(t) = change {
                if let (Some(d), Ok(b)) = (&self.durable, b.lock()) {
                    let field = breaker_field(&b, &self.clock);
                    d.save(|s| s.breaker = field, None);
                }
                announce(&self.rt, &self.on_event, &self.def.name, &t);
            }
        }
    }

    /// Phase 3: a day (or an hour) that has passed is closed and a new one opened, stored.
    fn roll_windows(&mut self) {
        let w = &mut self.windows;
        if Instant::now().duration_since(w.day_start) >= PERIOD {
            w.spent_before += w.day.spent().0;
            while Instant::now().duration_since(w.day_start) >= PERIOD {
                w.day_start += PERIOD;
            }
            w.open_day();
            if let Some(d) = &self.durable {
                let started = self.clock.wall(w.day_start);
                (w.day_mark, w.hour_mark) = (started, started);
                d.save(
                    |s| {
                        (s.day_started_ms, s.day_spent) = (started, 0);
                        (s.hour_started_ms, s.hour_spent) = (started, 0);
                    },
                    None,
                );
            }
            (self.on_event)(&LoopEvent::NewPeriod {
                schedule: Arc::clone(&self.def.name),
            });
        }
        if Instant::now().duration_since(w.hour_start) >= HOUR {
            while Instant::now().duration_since(w.hour_start) >= HOUR {
                w.hour_start += HOUR;
            }
            w.open_hour();
            if let Some(d) = &self.durable {
                let started = self.clock.wall(w.hour_start);
                w.hour_mark = started;
                d.save(|s| (s.hour_started_ms, s.hour_spent) = (started, 0), None);
            }
        }
    }

    /// Counts a tick skipped for `reason` on `baton_loop_skipped_total`.
    fn count_skip(&self, reason: &'static str) {
        metrics::counter!("baton_loop_skipped_total", "schedule" => self.def.name.to_string(), "reason" => reason).increment(1);
    }

    /// Phase 4: whether this tick runs — the previous run still going (per `overlap`), the loop
    /// paused by hand, the breaker, a runtime that is down.
    async fn admit(&mut self, stop: &mut watch::Receiver<bool>) -> Admission {
        if let Some(f) = &self.inflight
            && !f.handle.is_finished()
        {
            match self.def.overlap {
                Overlap::Skip => {
                    self.summary.skipped += 1;
                    self.count_skip("overlap");
                    (self.on_event)(&LoopEvent::Skipped {
                        schedule: Arc::clone(&self.def.name),
                    });
                    return Admission::Skip;
                }
                Overlap::Queue => {}
                Overlap::CancelPrevious => f.account.cancel(),
            }
        }
        // Queue (and cancel_previous, once cancelled): wait for the previous run to end first —
        // unless the loop is being stopped meanwhile.
        if let Some(f) = self.inflight.as_mut() {
            tokio::select! {
                biased;
                _ = stop.changed() => return Admission::Stop,
                _ = &mut f.handle => {}
            }
            // Ended: never poll its handle again (a breaker skip may come before the next run).
            self.inflight = None;
        }
        if self.rt.schedule_paused(&self.def.name) {
            if let Some(n) = self.resume.take() {
                tracing::warn!(schedule = %self.def.name, run = n, "the loop is paused: the interrupted run is not resumed");
            }
            self.summary.held += 1;
            self.count_skip("paused");
            return Admission::Skip;
        }
        if !self.admit_by_breaker() {
            return Admission::Skip;
        }
        // A runtime whose conductor gave up takes no more tasks: the tick is refused (recorded,
        // shown with the reason, not charged) and the loop stops.
        if let Some(why) = self.rt.down().map(str::to_string) {
            tracing::error!(schedule = %self.def.name, reason = %why, "the runtime is down: the loop stops");
            self.refuse(why);
            return Admission::Stop;
        }
        Admission::Run
    }

    /// The breaker's say on this tick: `false` to skip it (open, or a trial run going).
    fn admit_by_breaker(&mut self) -> bool {
        let Some(b) = &self.breaker else {
            return true;
        };
        match b.lock().map_or(Admit::Run, |mut b| b.admit(Instant::now())) {
            Admit::Run => true,
            Admit::Trial => {
                if let (Some(d), Ok(b)) = (&self.durable, b.lock()) {
                    let field = breaker_field(&b, &self.clock);
                    d.save(|s| s.breaker = field, None);
                }
                announce(
                    &self.rt,
                    &self.on_event,
                    &self.def.name,
                    &Transition {
                        to: BreakerState::HalfOpen,
                        reason: "the cool-down has passed: one trial run".into(),
                    },
                );
                true
            }
            Admit::Skip => {
                if let Some(n) = self.resume.take() {
                    tracing::warn!(schedule = %self.def.name, run = n, "the spend circuit breaker is open: the interrupted run is not resumed");
                }
                self.summary.paused += 1;
                self.count_skip("breaker");
                false
            }
        }
    }

    /// A tick refused because the runtime is down: counted, said with the reason, not charged.
    fn refuse(&mut self, why: String) {
        self.summary.refused += 1;
        self.summary.runtime_down = Some(why.clone());
        self.count_skip("runtime_down");
        (self.on_event)(&LoopEvent::Refused {
            schedule: Arc::clone(&self.def.name),
            run: None,
            reason: why,
        });
    }

    /// Phase 5: opens the run's account under the hour's, records it `running` (charged its
    /// worst case should the process die), and runs it in a task of its own.
    fn start_run(&mut self, tick_ms: u64) {
        self.summary.runs += 1;
        let run = self.run_base + self.summary.runs;
        let (envelope, account) = self.rt.prepare(
            self.def.task.clone(),
            self.def.budget.clone(),
            Some(&self.windows.hour),
        );
        // The most this run can spend: what an interrupted run is charged.
        let worst = account.remaining_cost();
        let record = RunRecord {
            outcome: "running".into(),
            cost_nanousd: 0,
            limit_nanousd: (worst.0 < u64::MAX).then_some(worst.0),
            started_ms: now_ms(),
            resumes: self.resume.take(),
            task: envelope.task.0,
        };
        self.rt.observe(&Event::RunStarted {
            schedule: &self.def.name,
            run,
            task: envelope.task.0,
            limit_nanousd: record.limit_nanousd,
            resumes: record.resumes,
        });
        if let Some(d) = &self.durable {
            d.save(|s| s.runs = run, Some((run, &record)));
        }
        let cx = RunCx {
            rt: Arc::clone(&self.rt),
            on_event: Arc::clone(&self.on_event),
            name: Arc::clone(&self.def.name),
            day: self.windows.day.clone(),
            hour: self.windows.hour.clone(),
            day_started: self.windows.day_mark,
            hour_started: self.windows.hour_mark,
            durable: self.durable.clone(),
            breaker: self.breaker.clone(),
            value: self.def.value.clone(),
            scores: Arc::clone(&self.scores),
            clock: self.clock,
            run,
            tick_ms,
        };
        let handle = tokio::spawn(cx.run(envelope, account.clone(), record));
        self.inflight = Some(InFlight { handle, account });
    }

    /// Phase 7: the run in flight gets up to `grace` to finish, then is cancelled; the summary.
    async fn stop(mut self, grace: Duration) -> LoopSummary {
        if let Some(mut f) = self.inflight.take()
            && tokio::time::timeout(grace, &mut f.handle).await.is_err()
        {
            f.account.cancel();
            let _ = f.handle.await;
        }
        // Stopped because the runtime went down: said once, with the reason (the next tick
        // would have been refused).
        if let (None, Some(why)) = (&self.summary.runtime_down, self.rt.down()) {
            let why = why.to_string();
            self.refuse(why);
        }
        let w = &self.windows;
        self.summary.cost_nanousd = (w.spent_before + w.day.spent().0).saturating_sub(w.carried);
        self.summary.breaker_trips = self
            .breaker
            .as_ref()
            .and_then(|b| b.lock().ok().map(|b| b.trips()))
            .unwrap_or(0);
        self.summary.scoreboard = self
            .scores
            .lock()
            .ok()
            .filter(|s| s.workflows > 0)
            .map(|s| crate::scoreboard::Scoreboard::from_sums(s.clone()));
        self.summary
    }
}

/// Every series of the loop is born at zero: a panel shows 0 rather than "No data", and the
/// first increment is a visible rise to `rate()`.
fn zero_series(def: &ScheduleDef, claimed: bool) {
    let shared: &[&str] = if claimed {
        &["elsewhere", "unclaimed"]
    } else {
        &[]
    };
    for reason in ["overlap", "breaker", "paused", "runtime_down"]
        .iter()
        .chain(shared)
    {
        metrics::counter!("baton_loop_skipped_total", "schedule" => def.name.to_string(), "reason" => *reason).absolute(0);
    }
    for outcome in Outcome::ALL.iter().map(|o| o.as_str()).chain(["refused"]) {
        metrics::counter!("baton_loop_runs_total", "schedule" => def.name.to_string(), "outcome" => outcome).absolute(0);
    }
    if def.breaker.is_some() {
        metrics::counter!("baton_loop_breaker_trips_total", "schedule" => def.name.to_string())
            .absolute(0);
        metrics::gauge!("baton_loop_breaker_state", "schedule" => def.name.to_string()).set(0.0);
    }
}

/// What a run needs in its own task, to run and then record itself.
struct RunCx {
    rt: Arc<Runtime>,
    on_event: OnEvent,
    name: Arc<str>,
    day: Account,
    hour: Account,
    /// The day's and hour's stored starts when the run began.
    day_started: u64,
    hour_started: u64,
    durable: Option<Arc<Durable>>,
    breaker: Option<Arc<Mutex<Breaker>>>,
    value: Option<ValueDef>,
    scores: Arc<Mutex<ScoreSums>>,
    clock: LoopClock,
    run: u64,
    tick_ms: u64,
}

impl RunCx {
    /// Phase 6: runs the task, then records its outcome (or its refusal).
    async fn run(self, envelope: Envelope<String>, account: Account, mut record: RunRecord) {
        // The loop's own budget shared with other replicas, if any, for this run's calls.
        let root = envelope.trace.0;
        self.rt.bind_run_budget(root, &self.name);
        let submitted = self.rt.submit_prepared(envelope, account).await;
        self.rt.unbind_run_budget(root);
        match submitted {
            Ok(done) => {
                let (rt, name, tick_ms) =
                    (Arc::clone(&self.rt), Arc::clone(&self.name), self.tick_ms);
                let run = self.finished(done, record);
                // For the other replicas' breakers.
                if let Some(claims) = rt.tick_claims()
                    && let Err(e) = claims.ran(&name, tick_ms, run).await
                {
                    tracing::warn!(schedule = %name, "this run's figures could not be shared with the other replicas: {e}");
                }
            }
            Err(e) => {
                // The runtime went down between the tick and the start: the run is on the
                // record as refused, charged nothing (not left `running`, to be charged its
                // worst case at the next start).
                metrics::counter!("baton_loop_runs_total", "schedule" => self.name.to_string(), "outcome" => "refused").increment(1);
                if let Some(d) = &self.durable {
                    record.outcome = "refused".into();
                    d.save(|_| {}, Some((self.run, &record)));
                }
                (self.on_event)(&LoopEvent::Refused {
                    schedule: Arc::clone(&self.name),
                    run: Some(self.run),
                    reason: e.to_string(),
                });
            }
        }
    }

    /// A run that ended: its report, the breaker's judgement, the state file (recorded before
    /// it is reported: what was printed is never lost), then the events.
    fn finished(self, done: TaskRun, mut record: RunRecord) -> baton_core::SharedRun {
        let snap = done.account.snapshot();
        let outcome = done.result.outcome;
        metrics::counter!("baton_loop_runs_total", "schedule" => self.name.to_string(), "outcome" => outcome.to_string()).increment(1);
        let (answer, error) = match outcome {
            Outcome::Completed => (Some(done.result.text), None),
            _ => (None, Some(done.result.text)),
        };
        let mut report = RunReport::from_ledger(&snap, outcome, answer, error);
        // The schedule's own value, for a completed run (its agents' is in the tasks).
        if let (Some(v), Some(a)) = (&self.value, &report.answer) {
            report.scoreboard.add_value(v.of(a));
        }
        crate::scoreboard::count_workflow(&self.name, &report.scoreboard);
        if let Ok(mut sums) = self.scores.lock() {
            sums.absorb(&report.scoreboard.sums);
        }
        let spent = done.account.spent().0;
        let mut field = None;
        let change = self.breaker.as_ref().and_then(|b| {
            let mut b = b.lock().ok()?;
            let t = b.record(
                Instant::now(),
                spent,
                report.scoreboard.value_nanousd,
                outcome == Outcome::Completed,
            );
            if let Some(roi) = b.roi() {
                metrics::gauge!("baton_loop_roi", "schedule" => self.name.to_string()).set(roi);
            }
            field = Some(breaker_field(&b, &self.clock));
            t
        });
        if let Some(d) = &self.durable {
            record.outcome = outcome.to_string();
            record.cost_nanousd = spent;
            let (day, hour) = (self.day.spent().0, self.hour.spent().0);
            let (day_started, hour_started) = (self.day_started, self.hour_started);
            d.save(
                |s: &mut LoopState| {
                    // Unless a new day or hour began meanwhile (its spend is its own).
                    if s.day_started_ms == day_started {
                        s.day_spent = day;
                    }
                    if s.hour_started_ms == hour_started {
                        s.hour_spent = hour;
                    }
                    if let Some(f) = field {
                        s.breaker = f;
                    }
                },
                Some((self.run, &record)),
            );
        }
        let value = report.scoreboard.value_nanousd;
        (self.on_event)(&LoopEvent::Ran {
            schedule: Arc::clone(&self.name),
            run: self.run,
            report: Box::new(report),
            period_spent: self.day.spent(),
            period_limit: self.day.cost_limit(),
            hour: self.hour.cost_limit().map(|l| (self.hour.spent(), l)),
            tick_ms: self.tick_ms,
            resumes: record.resumes,
        });
        if let Some(t) = change {
            announce(&self.rt, &self.on_event, &self.name, &t);
        }
        baton_core::SharedRun {
            cost_nanousd: spent,
            value_nanousd: value,
            completed: outcome == Outcome::Completed,
        }
    }
}

fn breaker_field(b: &Breaker, clock: &LoopClock) -> Option<(BreakerState, u64)> {
    match b.state() {
        BreakerState::Closed => None,
        s => Some((s, clock.wall(b.opened_at()))),
    }
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

/// A breaker's change of state: logged, audited (through the observers), counted, and passed on.
fn announce(rt: &Runtime, on_event: &OnEvent, schedule: &Arc<str>, t: &Transition) {
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
