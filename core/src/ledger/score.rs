//! What a task's account records for the scoreboard besides money: the value it produced, the
//! energy its calls burned (by method), re-sent context, quality, free-tier steps, prompt caching
//! and compaction.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::energy::{Energy, EnergyMethod};
use crate::money::NanoUsd;

/// Micro-joules by method.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnergySplit {
    /// Measured (CPU time × RAPL power).
    pub measured_uj: u64,
    /// Estimated (EcoLogits for hosted models; CPU time × a declared or default power).
    pub estimated_uj: u64,
}

impl EnergySplit {
    /// Both, micro-joules.
    pub const fn total_uj(&self) -> u64 {
        self.measured_uj.saturating_add(self.estimated_uj)
    }

    /// Adds `other` into `self`.
    pub fn absorb(&mut self, other: &EnergySplit) {
        self.measured_uj += other.measured_uj;
        self.estimated_uj += other.estimated_uj;
    }

    /// Adds one figure.
    pub fn add(&mut self, e: Energy) {
        match e.method {
            EnergyMethod::Measured => self.measured_uj += e.microjoules,
            EnergyMethod::Estimated => self.estimated_uj += e.microjoules,
            EnergyMethod::Unknown => {}
        }
    }
}

/// A task's scoreboard figures (its own, not its children's).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskScore {
    /// Value credited when the task completed (its agent's, or its loop's, `value:`).
    pub value: NanoUsd,
    /// Energy of its model calls.
    pub model_energy: EnergySplit,
    /// Energy of its tool calls.
    pub tool_energy: EnergySplit,
    /// Model calls with no energy figure (a model of unknown size).
    pub calls_without_energy: u64,
    /// Input tokens of its calls that an earlier call of the task had already sent.
    pub tokens_resent: u64,
    /// Σ model quality (0–100) × output tokens: divided by the output tokens, the task's
    /// output-weighted quality.
    pub quality_output: u64,
    /// Steps served by a free (price 0) model.
    pub free_steps: u64,
    /// What prompt caching changed, nano-dollars (reads saved minus writes' premium).
    pub cache_saved: i64,
    /// Transcript compactions.
    pub compactions: u64,
    /// Input tokens compaction kept from being sent (the uncompacted prompts' minus the
    /// compacted ones').
    pub compaction_tokens_saved: u64,
}

impl TaskScore {
    /// Adds `other` into `self`.
    pub fn absorb(&mut self, other: &TaskScore) {
        self.value = self.value.saturating_add(other.value);
        self.model_energy.absorb(&other.model_energy);
        self.tool_energy.absorb(&other.tool_energy);
        self.calls_without_energy += other.calls_without_energy;
        self.tokens_resent += other.tokens_resent;
        self.quality_output += other.quality_output;
        self.free_steps += other.free_steps;
        self.cache_saved += other.cache_saved;
        self.compactions += other.compactions;
        self.compaction_tokens_saved += other.compaction_tokens_saved;
    }

    /// Model and tool energy, micro-joules.
    pub const fn energy_uj(&self) -> u64 {
        self.model_energy
            .total_uj()
            .saturating_add(self.tool_energy.total_uj())
    }
}

/// The live cells behind [`TaskScore`] (relaxed atomics: only read at quiescence).
#[derive(Debug, Default)]
pub(super) struct ScoreCells {
    pub(super) cache_write_own: AtomicU64,
    value: AtomicU64,
    model_measured: AtomicU64,
    model_estimated: AtomicU64,
    tool_measured: AtomicU64,
    tool_estimated: AtomicU64,
    calls_without_energy: AtomicU64,
    resent: AtomicU64,
    quality_output: AtomicU64,
    free_steps: AtomicU64,
    cache_saved: AtomicI64,
    compactions: AtomicU64,
    compaction_saved: AtomicU64,
}

/// One answered step's scoreboard figures.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct StepScore {
    /// Input tokens an earlier call of the task had already sent.
    pub resent: u64,
    /// The answering model's quality (0–100).
    pub quality: u8,
    /// Its output tokens.
    pub output: u64,
    /// Whether the model was free (price 0).
    pub free: bool,
    /// Input tokens earlier compactions kept out of this call.
    pub compaction_saved: u64,
}

/// Which calls an energy figure belongs to.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum EnergyKind {
    /// A model call.
    Model,
    /// A tool call.
    Tool,
}

impl ScoreCells {
    pub(super) fn energy(&self, kind: EnergyKind, e: Energy) {
        let cell = match (kind, e.method) {
            (EnergyKind::Model, EnergyMethod::Unknown) => {
                self.calls_without_energy.fetch_add(1, Ordering::Relaxed);
                return;
            }
            (EnergyKind::Tool, EnergyMethod::Unknown) => return,
            (EnergyKind::Model, EnergyMethod::Measured) => &self.model_measured,
            (EnergyKind::Model, EnergyMethod::Estimated) => &self.model_estimated,
            (EnergyKind::Tool, EnergyMethod::Measured) => &self.tool_measured,
            (EnergyKind::Tool, EnergyMethod::Estimated) => &self.tool_estimated,
        };
        cell.fetch_add(e.microjoules, Ordering::Relaxed);
    }

    pub(super) fn value(&self, v: NanoUsd) {
        self.value.fetch_add(v.0, Ordering::Relaxed);
    }

    pub(super) fn step(&self, s: &StepScore) {
        let StepScore {
            resent,
            quality,
            output,
            free,
            compaction_saved,
        } = *s;
        self.compaction_saved
            .fetch_add(compaction_saved, Ordering::Relaxed);
        self.resent.fetch_add(resent, Ordering::Relaxed);
        self.quality_output
            .fetch_add(u64::from(quality).saturating_mul(output), Ordering::Relaxed);
        if free {
            self.free_steps.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(super) fn cache(&self, saved: i64) {
        self.cache_saved.fetch_add(saved, Ordering::Relaxed);
    }

    pub(super) fn compaction(&self) {
        self.compactions.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn snapshot(&self) -> TaskScore {
        let l = |c: &AtomicU64| c.load(Ordering::Acquire);
        TaskScore {
            value: NanoUsd(l(&self.value)),
            model_energy: EnergySplit {
                measured_uj: l(&self.model_measured),
                estimated_uj: l(&self.model_estimated),
            },
            tool_energy: EnergySplit {
                measured_uj: l(&self.tool_measured),
                estimated_uj: l(&self.tool_estimated),
            },
            calls_without_energy: l(&self.calls_without_energy),
            tokens_resent: l(&self.resent),
            quality_output: l(&self.quality_output),
            free_steps: l(&self.free_steps),
            cache_saved: self.cache_saved.load(Ordering::Acquire),
            compactions: l(&self.compactions),
            compaction_tokens_saved: l(&self.compaction_saved),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn energy_adds_by_method() {
        let mut split = EnergySplit::default();
        let e = |microjoules, method| Energy {
            microjoules,
            method,
        };
        split.add(e(5, EnergyMethod::Measured));
        split.add(e(7, EnergyMethod::Measured));
        split.add(e(11, EnergyMethod::Estimated));
        split.add(e(13, EnergyMethod::Estimated));
        split.add(e(999, EnergyMethod::Unknown));
        assert_eq!((split.measured_uj, split.estimated_uj), (12, 24));
        assert_eq!(split.total_uj(), 36);
        let mut twice = split;
        twice.absorb(&split);
        assert_eq!((twice.measured_uj, twice.estimated_uj), (24, 48));
    }
}
