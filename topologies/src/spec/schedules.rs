//! `schedules:` in a topology file: standing loops, their cadence, budgets per period, overlap
//! policy and spend circuit breaker.

use super::*;

/// What a loop does when its next tick comes while a run is still going.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Overlap {
    /// Skip the tick.
    #[default]
    Skip,
    /// Run it when the current run ends (at most one waits).
    Queue,
    /// Cancel the current run and start the new one.
    CancelPrevious,
}

/// What becomes of a loop's run that was cut by the death of the process.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnInterrupted {
    /// Record it `interrupted` (charged its worst case) and go on with the schedule.
    #[default]
    End,
    /// Record it `interrupted`, then give its task again at once, as a new run.
    Resume,
}

/// A standing loop.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSpec {
    /// How often (`1m`, `5m`); the first run starts at once. Give this or `cron`.
    #[serde(
        default,
        with = "duration_opt",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "baton_core::serde_helpers::duration_schema")]
    pub every: Option<Duration>,
    /// A cron expression (`*/5 * * * *`; five fields, or six with seconds first; `@hourly`,
    /// `L`, `W` and `#` are understood): runs start at its times. Give this or `every`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// The time zone `cron` is read in (an IANA name such as `Europe/Paris`); UTC by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// What becomes of a run the process died in (found `interrupted` in the state file at the
    /// next start): `end` (recorded, charged its worst case; the default) or `resume` (also
    /// recorded and charged, then given its task again at once, as a new run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_interrupted: Option<OnInterrupted>,
    /// The task each run gives the root agent.
    pub task: String,
    /// Limits per run (tightened by the root agent's own).
    #[serde(default, skip_serializing_if = "is_default_budget")]
    pub budget: BudgetSpec,
    /// Money per 24-hour period (counted from the loop's start); runs that would exceed it are
    /// refused by the ledger like any other budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_day_usd: Option<Usd>,
    /// Money per hour (counted from the loop's start), inside the day's: a burst of runs in one
    /// hour cannot spend the whole day's budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_hour_usd: Option<Usd>,
    /// What to do when a tick finds the previous run still going.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlap: Option<Overlap>,
    /// Delay each run by a random amount up to this, so that many loops do not fire together.
    #[serde(
        default,
        with = "duration_opt",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "baton_core::serde_helpers::duration_schema")]
    pub jitter: Option<Duration>,
    /// A spend circuit breaker: pauses the loop when its spend runs away.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breaker: Option<BreakerSpec>,
    /// What a completed run is worth (its ROI, and the breaker's `min_roi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<ValueSpec>,
}

/// A loop's circuit breaker. It opens (the loop pauses) when the runs that ended within
/// `window` spent more than `max_usd`, when a completed run cost more than `spike` times the
/// median of the recent completed runs, or when the value the window's runs produced is below
/// `min_roi` times their cost; after `cool_down` it half-opens and lets one run through, which
/// closes it again or re-opens it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BreakerSpec {
    /// The sliding window over which spend is summed (`1h`).
    #[serde(with = "baton_core::serde_helpers::duration_req")]
    #[schemars(schema_with = "baton_core::serde_helpers::duration_schema")]
    pub window: Duration,
    /// Spend within the window that opens the breaker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_usd: Option<Usd>,
    /// A completed run costing more than this multiple of the median of the last completed runs
    /// (at least 3 of them) opens the breaker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spike: Option<u32>,
    /// The least return on the window's spend: the breaker opens when the value its runs
    /// produced is below `min_roi` × their cost (`1.0`: the loop must pay for itself). Needs the
    /// schedule's `value:`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_roi: Option<f64>,
    /// Runs that must have ended within the window before `min_roi` judges (default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_runs: Option<u32>,
    /// How long the breaker stays open before letting one run through (default: the window).
    #[serde(
        default,
        with = "duration_opt",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "baton_core::serde_helpers::duration_schema")]
    pub cool_down: Option<Duration>,
}
