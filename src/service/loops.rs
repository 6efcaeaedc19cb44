//! The standing loops as `baton serve` shows them: their views, fed by the scheduler's events,
//! pause and resume.

use baton::actors::LoopEvent;
use serde::Serialize;
use serde_json::json;

use super::{Service, lock, now_ms};

/// A standing loop as the API shows it.
#[derive(Clone, Debug, Default, Serialize, schemars::JsonSchema)]
pub(crate) struct LoopView {
    /// The schedule's name.
    pub(crate) schedule: String,
    /// When it runs (`every 5m`, a cron expression).
    pub(crate) cadence: String,
    /// The task each run gives the root agent.
    pub(crate) task: String,
    /// Runs started (carried across restarts with `--state`).
    pub(crate) runs: u64,
    /// Ticks skipped because the previous run was still going.
    pub(crate) skipped: u64,
    /// Spent in the current budget period.
    pub(crate) period_spent_nanousd: u64,
    /// The period's limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) period_limit_nanousd: Option<u64>,
    /// The spend circuit breaker: `closed`, `open` or `halfopen`.
    pub(crate) breaker: String,
    /// Paused by hand (`POST /v1/loops/{name}/pause`): its ticks are skipped until resumed.
    pub(crate) paused: bool,
    /// When its next tick is due (Unix milliseconds, before jitter); absent when a cron
    /// expression has no time left.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) next_tick_ms: Option<u64>,
    /// The last run: its number, outcome, cost and answer or error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) last_run: Option<serde_json::Value>,
}

impl Service {
    /// The standing loops.
    pub(crate) fn loops(&self) -> Vec<LoopView> {
        let mut loops: Vec<LoopView> = lock(&self.loops).values().cloned().collect();
        let now = now_ms();
        for l in &mut loops {
            l.paused = self.runtime.schedule_paused(&l.schedule);
            let def = self
                .topology
                .schedules()
                .iter()
                .find(|d| *d.name == *l.schedule);
            l.next_tick_ms = def.and_then(|d| match &d.cadence {
                // `every` ticks at the loops' start, then every period.
                baton::topologies::Cadence::Every(every) => {
                    let every = u64::try_from(every.as_millis()).unwrap_or(u64::MAX).max(1);
                    let since = now.saturating_sub(self.started_ms);
                    Some(self.started_ms + since.div_ceil(every) * every)
                }
                baton::topologies::Cadence::Cron(c) => {
                    let at = jiff::Timestamp::from_millisecond(i64::try_from(now).ok()?).ok()?;
                    c.next_after(at)
                        .and_then(|t| u64::try_from(t.as_millisecond()).ok())
                }
            });
        }
        loops
    }

    /// Pauses (or resumes) a standing loop; kept in the state file. Its view, or `None` when
    /// there is no such loop.
    pub(crate) fn pause(&self, schedule: &str, pause: bool) -> Option<LoopView> {
        let known = if pause {
            self.runtime.pause_schedule(schedule)
        } else {
            self.runtime.resume_schedule(schedule)
        };
        if !known {
            return None;
        }
        if let Some(store) = &self.store {
            let paused: Vec<String> = lock(&self.loops)
                .keys()
                .filter(|k| self.runtime.schedule_paused(k))
                .cloned()
                .collect();
            if let Err(e) = store.save_meta("serve.paused", &paused) {
                tracing::error!("state file: {e}");
            }
        }
        self.feed.publish(
            "loop",
            None,
            json!({"schedule": schedule, "paused": pause}),
            false,
        );
        self.loops().into_iter().find(|l| l.schedule == schedule)
    }

    pub(super) fn on_loop_event(&self, e: &LoopEvent) {
        let mut loops = lock(&self.loops);
        let (name, fields): (&str, serde_json::Value) = match e {
            LoopEvent::Ran {
                schedule,
                run,
                report,
                period_spent,
                period_limit,
                ..
            } => {
                if let Some(l) = loops.get_mut(&**schedule) {
                    l.runs = l.runs.max(*run);
                    l.period_spent_nanousd = period_spent.0;
                    l.period_limit_nanousd = period_limit.map(|p| p.0);
                    l.last_run = Some(json!({"run": run, "outcome": report.outcome,
                        "cost_nanousd": report.totals.cost_nanousd, "answer": report.answer, "error": report.error}));
                }
                (
                    schedule,
                    json!({"schedule": &**schedule, "run": run, "outcome": report.outcome,
                    "cost_nanousd": report.totals.cost_nanousd, "period_spent_nanousd": period_spent.0}),
                )
            }
            LoopEvent::Skipped { schedule } => {
                if let Some(l) = loops.get_mut(&**schedule) {
                    l.skipped += 1;
                }
                (schedule, json!({"schedule": &**schedule, "skipped": true}))
            }
            LoopEvent::Breaker {
                schedule,
                state,
                reason,
            } => {
                if let Some(l) = loops.get_mut(&**schedule) {
                    l.breaker = format!("{state:?}").to_lowercase();
                }
                (
                    schedule,
                    json!({"schedule": &**schedule, "breaker": format!("{state:?}").to_lowercase(), "reason": reason}),
                )
            }
            LoopEvent::Resumed {
                schedule,
                runs_before,
                period_spent,
                interrupted,
            } => {
                if let Some(l) = loops.get_mut(&**schedule) {
                    l.runs = *runs_before;
                    l.period_spent_nanousd = period_spent.0;
                }
                (
                    schedule,
                    json!({"schedule": &**schedule, "resumed_after": runs_before, "interrupted": interrupted}),
                )
            }
            LoopEvent::Refused {
                schedule, reason, ..
            } => (
                schedule,
                json!({"schedule": &**schedule, "refused": reason}),
            ),
            _ => return,
        };
        drop(loops);
        let _ = name;
        self.feed.publish("loop", None, fields, false);
    }
}
