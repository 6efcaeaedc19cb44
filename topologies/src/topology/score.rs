//! The scoreboard's keys resolved and checked: `value:` (agents, schedules), `energy:`,
//! `context:`, and a model's size for its energy estimate.

use super::*;
use crate::spec::{ContextSpec, EnergySpec, ValueSpec};
use baton_core::ModelSize;

/// What completed work is worth, resolved: the answer patterns compiled.
#[derive(Clone, Debug)]
pub struct ValueDef {
    /// The value of a completed task or run whose answer matches no pattern.
    pub base: NanoUsd,
    /// Patterns tried in order, with their values.
    pub matching: Vec<(regex::Regex, NanoUsd)>,
}

impl PartialEq for ValueDef {
    fn eq(&self, other: &ValueDef) -> bool {
        self.base == other.base
            && self.matching.len() == other.matching.len()
            && self
                .matching
                .iter()
                .zip(&other.matching)
                .all(|((a, x), (b, y))| a.as_str() == b.as_str() && x == y)
    }
}

impl Eq for ValueDef {}

impl ValueDef {
    /// The value of a completed task or run that answered `answer`.
    pub fn of(&self, answer: &str) -> NanoUsd {
        self.matching
            .iter()
            .find(|(re, _)| re.is_match(answer))
            .map_or(self.base, |&(_, v)| v)
    }
}

/// `energy:` resolved.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EnergyDef {
    /// Declared watts per busy core (else RAPL or the fallback).
    pub cpu_watts_per_core: Option<f64>,
    /// Data-centre PUE for hosted models.
    pub pue: f64,
}

impl Default for EnergyDef {
    fn default() -> EnergyDef {
        EnergyDef {
            cpu_watts_per_core: None,
            pue: baton_core::ecologits::PUE,
        }
    }
}

/// `context:` resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContextDef {
    /// Input tokens above which the transcript is compacted.
    pub compact_over_tokens: u64,
    /// The model that writes the summary.
    pub compactor: Arc<str>,
    /// Turns kept verbatim at the end.
    pub keep_last: u32,
}

/// Where a model's size comes from.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum SizeSource {
    /// `params_b` in the topology.
    Declared,
    /// The built-in estimates (`baton_core::prices::builtin_size`).
    BuiltIn,
}

impl Validator<'_> {
    pub(super) fn check_value(&mut self, at: &[Seg<'_>], v: &ValueSpec) -> ValueDef {
        let mut matching = Vec::new();
        for m in &v.on_answer_matching {
            let mut path = at.to_vec();
            path.push(Seg::Key("on_answer_matching"));
            match regex::Regex::new(&m.pattern) {
                Ok(re) => matching.push((re, m.value_usd.0)),
                Err(e) => self.report(
                    &path,
                    format!("`{}` is not a valid regex: {e}", m.pattern),
                    Some("patterns use Rust's regex syntax; `(?i)` makes one ignore case".into()),
                ),
            }
        }
        if v.value_usd.is_none() && v.on_answer_matching.is_empty() {
            self.report(
                at,
                "`value` declares no amount".into(),
                Some("e.g. `value: { value_usd: 0.50 }`".into()),
            );
        }
        ValueDef {
            base: v.value_usd.map_or(NanoUsd::ZERO, |u| u.0),
            matching,
        }
    }

    pub(super) fn check_energy(&mut self, e: Option<&EnergySpec>) -> EnergyDef {
        let Some(e) = e else {
            return EnergyDef::default();
        };
        if let Some(w) = e.cpu_watts_per_core
            && !(w.is_finite() && w > 0.0 && w <= 1000.0)
        {
            self.report(
                &[Seg::Key("energy"), Seg::Key("cpu_watts_per_core")],
                format!("`cpu_watts_per_core` of {w} is not a power one core draws"),
                Some(
                    "a number of watts above 0 and at most 1000 (a server core draws 3 to 15)"
                        .into(),
                ),
            );
        }
        if let Some(p) = e.pue
            && !(p.is_finite() && (1.0..=5.0).contains(&p))
        {
            self.report(
                &[Seg::Key("energy"), Seg::Key("pue")],
                format!("`pue` of {p} is out of range"),
                Some("a data centre's PUE is at least 1.0 (all power reaches the IT load); 1.1 to 1.6 is usual".into()),
            );
        }
        EnergyDef {
            cpu_watts_per_core: e.cpu_watts_per_core,
            pue: e.pue.unwrap_or(baton_core::ecologits::PUE),
        }
    }

    /// A model's size for its energy estimate: declared, or the built-in estimate; `None` for
    /// models measured by CPU time (`local`) or of unknown size.
    pub(super) fn check_size(
        &mut self,
        name: &str,
        m: &ModelSpec,
        wire: &str,
    ) -> Option<(ModelSize, SizeSource)> {
        let at = |k: &'static str| [Seg::Key("models"), Seg::Key(name), Seg::Key(k)];
        for (key, v) in [
            ("params_b", m.params_b),
            ("params_total_b", m.params_total_b),
        ] {
            if let Some(v) = v
                && !(v.is_finite() && v > 0.0 && v <= 100_000.0)
            {
                self.report(
                    &at(key),
                    format!("`{key}` of {v} is not a number of billions of parameters"),
                    Some("e.g. `params_b: 70` for a 70-billion-parameter model".into()),
                );
                return None;
            }
        }
        if m.provider == Provider::Local && (m.params_b.is_some() || m.params_total_b.is_some()) {
            self.report(
                &at("params_b"),
                "`params_b` applies to hosted models: a local model's energy is its measured CPU time"
                    .into(),
                None,
            );
            return None;
        }
        match (m.params_b, m.params_total_b) {
            (None, Some(_)) => {
                self.report(
                    &at("params_total_b"),
                    "`params_total_b` needs `params_b` (the active parameters)".into(),
                    None,
                );
                None
            }
            (Some(active), total) => {
                let total = total.unwrap_or(active);
                if total < active {
                    self.report(
                        &at("params_total_b"),
                        format!("{total} billion parameters in all cannot hold {active} billion active ones"),
                        None,
                    );
                }
                Some((
                    ModelSize {
                        active_b: active,
                        total_b: total.max(active),
                    },
                    SizeSource::Declared,
                ))
            }
            (None, None) if m.provider.is_http() => {
                baton_core::prices::builtin_size(wire).map(|s| (s, SizeSource::BuiltIn))
            }
            (None, None) => None,
        }
    }

    pub(super) fn check_context(
        &mut self,
        agent: &str,
        c: &ContextSpec,
        models: &BTreeMap<String, ModelSpec>,
    ) -> ContextDef {
        let at = |k: &'static str| {
            [
                Seg::Key("agents"),
                Seg::Key(agent),
                Seg::Key("context"),
                Seg::Key(k),
            ]
        };
        if !models.contains_key(&c.compactor) {
            let hint = did_you_mean(&c.compactor, models.keys());
            self.report(
                &at("compactor"),
                format!("unknown model `{}`", c.compactor),
                hint.or_else(|| Some("name a model declared under `models:`".into())),
            );
        }
        if c.compact_over_tokens < 256 {
            self.report(
                &at("compact_over_tokens"),
                format!(
                    "`compact_over_tokens: {}` would compact nearly every call",
                    c.compact_over_tokens
                ),
                Some("a threshold of at least 256 tokens; a summary costs a call".into()),
            );
        }
        ContextDef {
            compact_over_tokens: c.compact_over_tokens,
            compactor: Arc::from(c.compactor.as_str()),
            keep_last: c.keep_last.unwrap_or(baton_core::defaults::KEEP_LAST),
        }
    }
}
