//! A standing loop's spend circuit breaker: closed (runs go), open (ticks are skipped), half-open
//! (one trial run; it closes the breaker or re-opens it).
//!
//! The breaker judges runs as they end: it opens when the runs that ended within the window spent
//! more than the limit, or when a completed run cost more than `spike` times the median of the
//! recent completed runs. Opening clears the window, so the trial run after the cool-down is
//! judged on its own spend, not on the spend that tripped the breaker.

use std::collections::VecDeque;

use baton_core::NanoUsd;
use baton_topologies::BreakerDef;
use tokio::time::Instant;

/// How many completed runs the spike check takes the median of.
const RECENT: usize = 10;
/// How many completed runs the spike check needs before it judges.
const MIN_RECENT: usize = 3;

/// Where a breaker stands.
#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Runs go.
    Closed,
    /// Ticks are skipped until the cool-down has passed.
    Open,
    /// One trial run is going; its end closes or re-opens the breaker.
    HalfOpen,
}

impl BreakerState {
    /// The name used in events, audit records and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }

    /// The value of the `baton_loop_breaker_state` gauge.
    pub(crate) fn gauge(self) -> f64 {
        match self {
            BreakerState::Closed => 0.0,
            BreakerState::HalfOpen => 1.0,
            BreakerState::Open => 2.0,
        }
    }
}

impl std::fmt::Display for BreakerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a tick may do.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Run as usual.
    Run,
    /// Run as the half-open trial (the breaker just half-opened).
    Trial,
    /// Skip: the breaker is open, or a trial is going.
    Skip,
}

/// A change of state, with why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Transition {
    pub(crate) to: BreakerState,
    pub(crate) reason: String,
}

/// The breaker of one loop.
#[derive(Debug)]
pub(crate) struct Breaker {
    def: BreakerDef,
    state: BreakerState,
    opened_at: Instant,
    /// Runs that ended within the window: when, what they spent, and the value they produced.
    window: VecDeque<(Instant, u64, u64)>,
    /// Costs of the last completed runs.
    recent: VecDeque<u64>,
    /// Times it opened.
    trips: u64,
}

fn usd(n: u64) -> String {
    NanoUsd(n).to_string()
}

impl Breaker {
    pub(crate) fn new(def: BreakerDef) -> Breaker {
        Breaker {
            def,
            state: BreakerState::Closed,
            opened_at: Instant::now(),
            window: VecDeque::new(),
            recent: VecDeque::new(),
            trips: 0,
        }
    }

    /// A breaker restored from the state file: open since `opened_at` (a trial that was going
    /// when the process died counts as open: its cool-down has passed, so the next tick tries
    /// again).
    pub(crate) fn restored(def: BreakerDef, opened_at: Instant) -> Breaker {
        Breaker {
            state: BreakerState::Open,
            opened_at,
            ..Breaker::new(def)
        }
    }

    /// When it last opened.
    pub(crate) fn opened_at(&self) -> Instant {
        self.opened_at
    }

    pub(crate) fn state(&self) -> BreakerState {
        self.state
    }

    /// At a tick: may a run start? Half-opens the breaker once the cool-down has passed.
    pub(crate) fn admit(&mut self, now: Instant) -> Admit {
        match self.state {
            BreakerState::Closed => Admit::Run,
            BreakerState::Open if now.duration_since(self.opened_at) >= self.def.cool_down => {
                self.state = BreakerState::HalfOpen;
                Admit::Trial
            }
            BreakerState::Open | BreakerState::HalfOpen => Admit::Skip,
        }
    }

    /// A run ended at `now` having spent `cost` and produced `value` (`completed` when it
    /// answered). Returns the change of state it causes, if any.
    pub(crate) fn record(
        &mut self,
        now: Instant,
        cost: u64,
        value: u64,
        completed: bool,
    ) -> Option<Transition> {
        let trip = self.judge(now, cost, value, completed);
        match (self.state, trip) {
            (BreakerState::Closed, Some(reason)) => Some(self.open(now, reason)),
            (BreakerState::HalfOpen, Some(reason)) => {
                Some(self.open(now, format!("the trial run: {reason}")))
            }
            (BreakerState::HalfOpen, None) => {
                self.state = BreakerState::Closed;
                Some(Transition {
                    to: BreakerState::Closed,
                    reason: format!("the trial run spent {}", usd(cost)),
                })
            }
            // A run that started before the breaker opened, ending while it is open: its spend
            // counts for the next trial's window, but it does not extend the cool-down.
            (BreakerState::Open, _) | (BreakerState::Closed, None) => None,
        }
    }

    /// Times it opened (in this process).
    pub(crate) fn trips(&self) -> u64 {
        self.trips
    }

    /// Value per dollar of the runs in the window (null before any spend).
    pub(crate) fn roi(&self) -> Option<f64> {
        let (cost, value) = self.window_sums();
        (cost > 0).then(|| value as f64 / cost as f64)
    }

    fn window_sums(&self) -> (u64, u64) {
        self.window
            .iter()
            .fold((0u64, 0u64), |(c, v), &(_, rc, rv)| {
                (c.saturating_add(rc), v.saturating_add(rv))
            })
    }

    fn open(&mut self, now: Instant, reason: String) -> Transition {
        self.trips += 1;
        self.state = BreakerState::Open;
        self.opened_at = now;
        self.window.clear();
        Transition {
            to: BreakerState::Open,
            reason,
        }
    }

    /// Why this run trips the breaker, if it does; updates the window and the recent costs.
    fn judge(&mut self, now: Instant, cost: u64, value: u64, completed: bool) -> Option<String> {
        self.window.push_back((now, cost, value));
        while let Some(&(at, ..)) = self.window.front()
            && now.duration_since(at) > self.def.window
        {
            self.window.pop_front();
        }
        let mut reason = None;
        if completed
            && let Some(spike) = self.def.spike
            && self.recent.len() >= MIN_RECENT
        {
            let mut sorted: Vec<u64> = self.recent.iter().copied().collect();
            sorted.sort_unstable();
            let median = sorted[sorted.len() / 2];
            if cost > median.saturating_mul(u64::from(spike)) {
                reason = Some(format!(
                    "a run cost {}, more than {spike}× the median {} of the last {} runs",
                    usd(cost),
                    usd(median),
                    sorted.len()
                ));
            }
        }
        if completed {
            if self.recent.len() == RECENT {
                self.recent.pop_front();
            }
            self.recent.push_back(cost);
        }
        if reason.is_none()
            && let Some(max) = self.def.max_cost
        {
            let spent: u64 = self.window.iter().map(|&(_, c, _)| c).sum();
            if spent > max.0 {
                reason = Some(format!(
                    "{} spent in the last {}, over the {} limit",
                    usd(spent),
                    baton_core::format_duration(self.def.window),
                    usd(max.0)
                ));
            }
        }
        // A half-open trial is judged on its own, whatever `min_runs` says.
        let min_runs = if self.state == BreakerState::HalfOpen {
            1
        } else {
            self.def.min_runs as usize
        };
        if reason.is_none()
            && let Some(min) = self.def.min_roi_permille
            && self.window.len() >= min_runs
        {
            let (cost, value) = self.window_sums();
            if u128::from(value) * 1000 < u128::from(min) * u128::from(cost) {
                let n = self.window.len();
                reason = Some(format!(
                    "{} in the last {} produced {} of value for {} spent: ROI {:.2}, below min_roi {}",
                    if n == 1 {
                        "1 run".to_string()
                    } else {
                        format!("{n} runs")
                    },
                    baton_core::format_duration(self.def.window),
                    usd(value),
                    usd(cost),
                    value as f64 / cost as f64,
                    min as f64 / 1000.0
                ));
            }
        }
        reason
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn def(max: Option<u64>, spike: Option<u32>) -> BreakerDef {
        BreakerDef {
            window: Duration::from_secs(600),
            max_cost: max.map(NanoUsd),
            spike,
            cool_down: Duration::from_secs(1800),
            min_roi_permille: None,
            min_runs: 5,
        }
    }

    #[test]
    fn opens_on_window_spend_then_half_opens_after_the_cool_down() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut b = Breaker::new(def(Some(100), None));
        assert_eq!(b.admit(at(0)), Admit::Run);
        assert_eq!(b.record(at(0), 60, 0, true), None);
        // 60 + 50 within 10 minutes: over 100.
        let t = b.record(at(60), 50, 0, true).expect("opens");
        assert_eq!(t.to, BreakerState::Open);
        assert!(t.reason.contains("in the last 10m"), "{}", t.reason);
        assert_eq!(b.admit(at(120)), Admit::Skip);
        assert_eq!(b.admit(at(60 + 1799)), Admit::Skip);
        assert_eq!(b.admit(at(60 + 1800)), Admit::Trial);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        // While the trial is going, ticks skip.
        assert_eq!(b.admit(at(60 + 1830)), Admit::Skip);
        // The window was cleared on opening: the trial is judged on its own spend.
        let t = b.record(at(60 + 1800), 60, 0, true).expect("closes");
        assert_eq!(t.to, BreakerState::Closed);
        assert_eq!(b.admit(at(60 + 1860)), Admit::Run);
    }

    #[test]
    fn a_costly_trial_reopens_and_spend_outside_the_window_is_forgotten() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut b = Breaker::new(def(Some(100), None));
        assert_eq!(b.record(at(0), 90, 0, true), None);
        // 11 minutes later the first run has left the window.
        assert_eq!(b.record(at(660), 90, 0, true), None);
        let t = b
            .record(at(700), 20, 0, false)
            .expect("opens: failed runs' spend counts");
        assert_eq!(t.to, BreakerState::Open);
        assert_eq!(b.admit(at(700 + 1800)), Admit::Trial);
        let t = b.record(at(2600), 150, 0, true).expect("re-opens");
        assert_eq!(t.to, BreakerState::Open);
        assert!(t.reason.starts_with("the trial run: "), "{}", t.reason);
        assert_eq!(b.admit(at(2600 + 1799)), Admit::Skip);
        assert_eq!(b.admit(at(2600 + 1800)), Admit::Trial);
    }

    #[test]
    fn opens_when_the_window_returns_less_than_min_roi_and_probes_half_open() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut b = Breaker::new(BreakerDef {
            min_roi_permille: Some(1000),
            min_runs: 3,
            ..def(None, None)
        });
        // Two runs worth less than they cost: fewer than min_runs, no judgement yet.
        assert_eq!(b.record(at(0), 100, 50, true), None);
        assert_eq!(b.record(at(60), 100, 50, true), None);
        assert_eq!(b.roi(), Some(0.5));
        // A third: value 150 + 100 = 250 for 300 spent, ROI 0.83 < 1.0.
        let t = b.record(at(120), 100, 150, true).expect("opens");
        assert_eq!(t.to, BreakerState::Open);
        assert!(
            t.reason.contains("ROI 0.83, below min_roi 1"),
            "{}",
            t.reason
        );
        assert_eq!(b.admit(at(121)), Admit::Skip);
        assert_eq!(b.admit(at(120 + 1800)), Admit::Trial);
        // The trial alone pays for itself (exactly: ROI 1.0 is not below 1.0): closes.
        let t = b.record(at(1930), 80, 80, true).expect("closes");
        assert_eq!(t.to, BreakerState::Closed);
        // Runs that produce enough keep it closed; the exact boundary is integer arithmetic.
        let mut b = Breaker::new(BreakerDef {
            min_roi_permille: Some(1500),
            min_runs: 1,
            ..def(None, None)
        });
        assert_eq!(b.record(at(0), 2, 3, true), None, "3 / 2 = 1.5 exactly");
        assert!(b.record(at(1), 2, 2, true).is_some(), "5 / 4 < 1.5");
    }

    #[test]
    fn opens_on_a_spike_against_the_median() {
        let t0 = Instant::now();
        let mut b = Breaker::new(def(None, Some(5)));
        // Fewer than three runs: no median to judge against yet.
        assert_eq!(b.record(t0, 10, 0, true), None);
        assert_eq!(b.record(t0, 1_000, 0, true), None);
        assert_eq!(b.record(t0, 12, 0, true), None);
        // The median of 10, 1000, 12 is 12: 60 is 5× — not more.
        assert_eq!(b.record(t0, 60, 0, true), None);
        // Median of 10, 1000, 12, 60 (upper) is 60: 301 > 5 × 60.
        let t = b.record(t0, 301, 0, true).expect("opens");
        assert!(t.reason.contains("more than 5× the median"), "{}", t.reason);
        // A failed run is never a spike (its cost is not an answer's).
        let mut b = Breaker::new(def(None, Some(2)));
        for _ in 0..3 {
            b.record(t0, 10, 0, true);
        }
        assert_eq!(b.record(t0, 100, 0, false), None);
    }
}
