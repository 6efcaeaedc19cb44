//! The tokenomics scoreboard of a run, a batch or a loop: cost and energy per completed
//! workflow, value and ROI, quality, the share of steps served free, re-sent context, caching and
//! compaction. Every figure is defined in docs/tokenomics.md.

use baton_core::{AccountSnapshot, Outcome};
use serde::Serialize;

/// What the scoreboard is computed from: sums over tasks (exact integers), so that scoreboards
/// of runs add up to the scoreboard of their batch or loop.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct ScoreSums {
    /// Workflows scored (root tasks or loop runs).
    pub workflows: u64,
    /// Those that completed.
    pub completed: u64,
    /// Money booked, nano-dollars.
    pub cost_nanousd: u64,
    /// Value credited, nano-dollars.
    pub value_nanousd: u64,
    /// Energy measured (CPU time × RAPL power), micro-joules.
    pub energy_measured_uj: u64,
    /// Energy estimated (EcoLogits; CPU time × a declared or default power), micro-joules.
    pub energy_estimated_uj: u64,
    /// Of the energy, what model calls burned, micro-joules (the rest is tools').
    pub energy_model_uj: u64,
    /// Model calls without an energy figure (a model of unknown size).
    pub model_calls_without_energy: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Input tokens (cached included).
    pub input_tokens: u64,
    /// Σ quality × output tokens.
    pub quality_output: u64,
    /// Loop iterations.
    pub steps: u64,
    /// Steps served by a free (price 0) model.
    pub free_steps: u64,
    /// Input tokens an earlier call of the same task had already sent.
    pub tokens_resent: u64,
    /// What prompt caching changed, nano-dollars.
    pub cache_saved_nanousd: i64,
    /// Transcript compactions.
    pub compactions: u64,
    /// Input tokens compaction kept from being sent.
    pub compaction_tokens_saved: u64,
}

impl ScoreSums {
    /// The sums over one run's account tree; `completed` when the run's root completed.
    pub fn of_run(root: &AccountSnapshot, outcome: Outcome) -> ScoreSums {
        let mut s = ScoreSums {
            workflows: 1,
            completed: u64::from(outcome == Outcome::Completed),
            ..ScoreSums::default()
        };
        root.walk(&mut |a| {
            let sc = &a.score;
            s.cost_nanousd += a.own.cost.0;
            s.value_nanousd += sc.value.0;
            s.energy_measured_uj += sc.model_energy.measured_uj + sc.tool_energy.measured_uj;
            s.energy_estimated_uj += sc.model_energy.estimated_uj + sc.tool_energy.estimated_uj;
            s.energy_model_uj += sc.model_energy.total_uj();
            s.model_calls_without_energy += sc.calls_without_energy;
            s.output_tokens += a.own.tokens.output;
            s.input_tokens += a.own.tokens.input;
            s.quality_output += sc.quality_output;
            s.steps += a.own.steps;
            s.free_steps += sc.free_steps;
            s.tokens_resent += sc.tokens_resent;
            s.cache_saved_nanousd += sc.cache_saved;
            s.compactions += sc.compactions;
            s.compaction_tokens_saved += sc.compaction_tokens_saved;
        });
        s
    }

    /// Adds `other` into `self`.
    pub fn absorb(&mut self, o: &ScoreSums) {
        self.workflows += o.workflows;
        self.completed += o.completed;
        self.cost_nanousd += o.cost_nanousd;
        self.value_nanousd += o.value_nanousd;
        self.energy_measured_uj += o.energy_measured_uj;
        self.energy_estimated_uj += o.energy_estimated_uj;
        self.energy_model_uj += o.energy_model_uj;
        self.model_calls_without_energy += o.model_calls_without_energy;
        self.output_tokens += o.output_tokens;
        self.input_tokens += o.input_tokens;
        self.quality_output += o.quality_output;
        self.steps += o.steps;
        self.free_steps += o.free_steps;
        self.tokens_resent += o.tokens_resent;
        self.cache_saved_nanousd += o.cache_saved_nanousd;
        self.compactions += o.compactions;
        self.compaction_tokens_saved += o.compaction_tokens_saved;
    }

    /// Energy in all, micro-joules.
    pub fn energy_uj(&self) -> u64 {
        self.energy_measured_uj + self.energy_estimated_uj
    }
}

/// The inputs of the seed's "value per watt" figure, shown beside it.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct ValuePerWattInputs {
    /// Output tokens.
    pub output_tokens: u64,
    /// Output-weighted model quality, as a fraction (the 0–100 score / 100).
    pub quality: Option<f64>,
    /// Energy, watt-hours.
    pub energy_wh: f64,
    /// Money, dollars.
    pub cost_usd: f64,
}

/// The scoreboard (`scoreboard` in `baton run --json`).
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Scoreboard {
    /// The sums everything below is computed from.
    pub sums: ScoreSums,
    /// Money per completed workflow, nano-dollars (null when none completed). Failed runs' spend
    /// counts: it is the price of the completed ones.
    pub cost_per_completed_workflow_nanousd: Option<u64>,
    /// Value produced, nano-dollars.
    pub value_nanousd: u64,
    /// Return on spend: value / cost (null when nothing was spent).
    pub roi: Option<f64>,
    /// Energy, joules (measured and estimated; a lower bound when `energy_complete` is false).
    pub energy_j: f64,
    /// Energy, watt-hours.
    pub energy_wh: f64,
    /// Energy per completed workflow, joules.
    pub energy_per_completed_workflow_j: Option<f64>,
    /// How the energy was obtained: `measured`, `estimated`, `measured+estimated`, or `none`.
    pub energy_method: String,
    /// Whether every model call had an energy figure.
    pub energy_complete: bool,
    /// Output tokens.
    pub output_tokens: u64,
    /// The answering models' quality (0–100), weighted by their output tokens.
    pub quality: Option<f64>,
    /// The seed's VALUE = OUTPUT TOKENS × QUALITY / (POWER × COST): output tokens × quality (as
    /// a fraction) / (energy in Wh × cost in dollars). Null when the energy or the cost is zero,
    /// or when the energy is incomplete (a model call of unknown size): a partial figure would
    /// flatter the run.
    pub value_per_watt: Option<f64>,
    /// Its inputs.
    pub value_per_watt_inputs: ValuePerWattInputs,
    /// Share of steps served by a free (price 0) model.
    pub free_tier_share: Option<f64>,
    /// Input tokens re-sent (already sent by an earlier call of the same task).
    pub tokens_resent: u64,
    /// Re-sent tokens as a share of all input tokens.
    pub resent_share: Option<f64>,
    /// What prompt caching saved, nano-dollars (negative when cache writes cost more than reads
    /// saved).
    pub cache_saved_nanousd: i64,
    /// Transcript compactions.
    pub compactions: u64,
    /// Input tokens compaction kept from being sent.
    pub compaction_tokens_saved: u64,
}

fn ratio(num: f64, den: f64) -> Option<f64> {
    (den > 0.0).then(|| num / den)
}

impl Scoreboard {
    /// The scoreboard of `sums`.
    pub fn from_sums(sums: ScoreSums) -> Scoreboard {
        let s = &sums;
        let energy_j = s.energy_uj() as f64 / 1e6;
        let energy_wh = energy_j / 3600.0;
        let cost_usd = s.cost_nanousd as f64 / 1e9;
        let quality = ratio(s.quality_output as f64, s.output_tokens as f64);
        let method = match (s.energy_measured_uj > 0, s.energy_estimated_uj > 0) {
            (true, true) => "measured+estimated",
            (true, false) => "measured",
            (false, true) => "estimated",
            (false, false) => "none",
        };
        let value_per_watt = match quality {
            Some(q) if energy_wh > 0.0 && cost_usd > 0.0 && s.model_calls_without_energy == 0 => {
                Some(s.output_tokens as f64 * (q / 100.0) / (energy_wh * cost_usd))
            }
            _ => None,
        };
        Scoreboard {
            cost_per_completed_workflow_nanousd: (s.completed > 0)
                .then(|| s.cost_nanousd.div_ceil(s.completed)),
            value_nanousd: s.value_nanousd,
            roi: ratio(s.value_nanousd as f64, s.cost_nanousd as f64),
            energy_j,
            energy_wh,
            energy_per_completed_workflow_j: ratio(energy_j, s.completed as f64),
            energy_method: method.into(),
            energy_complete: s.model_calls_without_energy == 0,
            output_tokens: s.output_tokens,
            quality,
            value_per_watt,
            value_per_watt_inputs: ValuePerWattInputs {
                output_tokens: s.output_tokens,
                quality: quality.map(|q| q / 100.0),
                energy_wh,
                cost_usd,
            },
            free_tier_share: ratio(s.free_steps as f64, s.steps as f64),
            tokens_resent: s.tokens_resent,
            resent_share: ratio(s.tokens_resent as f64, s.input_tokens as f64),
            cache_saved_nanousd: s.cache_saved_nanousd,
            compactions: s.compactions,
            compaction_tokens_saved: s.compaction_tokens_saved,
            sums,
        }
    }

    /// Adds value credited outside the tasks (a loop's `value:` for a completed run).
    pub fn add_value(&mut self, value: baton_core::NanoUsd) {
        let mut sums = self.sums.clone();
        sums.value_nanousd += value.0;
        *self = Scoreboard::from_sums(sums);
    }

    /// The scoreboard of several runs together.
    pub fn merge<'a>(boards: impl IntoIterator<Item = &'a Scoreboard>) -> Scoreboard {
        let mut sums = ScoreSums::default();
        for b in boards {
            sums.absorb(&b.sums);
        }
        Scoreboard::from_sums(sums)
    }
}

/// Counts a finished workflow on the scoreboard's metrics: its value
/// (`baton_workflow_value_nanousd_total`, exposed in dollars as
/// `baton_workflow_value_usd_total`) and its energy (`baton_workflow_energy_joules`), labelled
/// with the workflow (the root agent, or the schedule).
pub(crate) fn count_workflow(workflow: &str, board: &Scoreboard) {
    if board.sums.value_nanousd > 0 {
        metrics::counter!("baton_workflow_value_nanousd_total", "workflow" => workflow.to_string())
            .increment(board.sums.value_nanousd);
    }
    if board.sums.energy_uj() > 0 {
        metrics::histogram!("baton_workflow_energy_joules", "workflow" => workflow.to_string())
            .record(board.energy_j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_from_sums() {
        let b = Scoreboard::from_sums(ScoreSums {
            workflows: 3,
            completed: 2,
            cost_nanousd: 50_000_000, // $0.05
            value_nanousd: 150_000_000,
            energy_estimated_uj: 7_200_000_000, // 7,200 J = 2 Wh
            output_tokens: 400,
            quality_output: 300 * 90 + 100 * 50,
            steps: 10,
            free_steps: 4,
            input_tokens: 1000,
            tokens_resent: 600,
            ..ScoreSums::default()
        });
        assert_eq!(b.cost_per_completed_workflow_nanousd, Some(25_000_000));
        assert_eq!(b.roi, Some(3.0));
        assert_eq!(b.energy_wh, 2.0);
        assert_eq!(b.energy_per_completed_workflow_j, Some(3600.0));
        assert_eq!(b.quality, Some(80.0));
        // 400 × 0.8 / (2 Wh × $0.05) = 3,200.
        assert!((b.value_per_watt.unwrap() - 3200.0).abs() < 1e-9);
        assert_eq!(b.free_tier_share, Some(0.4));
        assert_eq!(b.resent_share, Some(0.6));
        assert_eq!(b.energy_method, "estimated");
        let two = Scoreboard::merge([&b, &b]);
        assert_eq!(two.sums.value_nanousd, 300_000_000);
        assert_eq!(two.roi, Some(3.0));
        let none = Scoreboard::from_sums(ScoreSums::default());
        assert_eq!(
            (none.roi, none.value_per_watt, none.quality),
            (None, None, None)
        );
    }
}
