//! One model on an agent's ladder, as the plan resolves it: the model, its price and limits,
//! its metric handles, and how its calls get their energy figure.

use std::sync::Arc;
use std::time::Duration;

use baton_core::{Model, Price};
use baton_topologies::Provider;
use metrics::{Counter, Histogram};

use super::ROUTE_REASONS;
use crate::error::RuntimeError;

/// One model on an agent's ladder.
pub(crate) struct Rung {
    pub(crate) name: Arc<str>,
    pub(crate) model: Arc<dyn Model>,
    pub(crate) price: Price,
    pub(crate) max_output: u32,
    pub(crate) quality: u8,
    /// On the agent's own hardware (`tier: local`): its low confidence escalates.
    pub(crate) local: bool,
    /// The most tokens one call can hold, if known.
    pub(crate) context_window: Option<u64>,
    pub(crate) timeout: Duration,
    /// The prompt tokens the agent's tool schemas add for this model, counted once at start
    /// (a `delegate` schema listing thousands of children is not walked at every step).
    pub(crate) tool_tokens: u64,
    pub(crate) retry: baton_topologies::RetryPolicy,
    pub(crate) retries: Counter,
    /// Billed prompt tokens over the estimate that was reserved.
    pub(crate) estimate_ratio: Histogram,
    pub(crate) requests_ok: Counter,
    pub(crate) requests_err: Counter,
    pub(crate) latency: Histogram,
    pub(crate) cost: Counter,
    /// `baton_router_decisions_total` for reasons cheapest, escalated, fallback, budget
    /// (indices of [`ROUTE_REASONS`]).
    pub(crate) decisions: [Counter; 4],
    pub(crate) tokens_in: Counter,
    pub(crate) tokens_out: Counter,
    pub(crate) tokens_cached: Counter,
    /// Replies booked at Baton's estimate because the server reported no usage.
    pub(crate) estimated: Counter,
    /// What the server billed over what was estimated, in millionths: the largest ratio seen
    /// (see [`Rung::calibrated`]), and how many calls it was learnt from.
    pub(crate) ratio_ppm: std::sync::atomic::AtomicU64,
    pub(crate) ratio_seen: std::sync::atomic::AtomicU64,
    /// Replies cut at the completion-token ceiling.
    pub(crate) truncated: Counter,
    /// CPU seconds of this machine's inference per call (embedded models).
    pub(crate) cpu: Histogram,
    /// `baton_energy_uj_total{kind="model"}`, measured and estimated.
    pub(crate) energy_uj: [Counter; 2],
    /// How its calls get their energy figure.
    pub(crate) energy: RungEnergy,
}

impl Rung {
    /// Calls seen before the estimate is calibrated.
    const CALIBRATE_AFTER: u64 = 2;

    /// `estimate` corrected by what the server has billed: after a few calls, the prompt
    /// estimate is scaled by the largest billed/estimated ratio seen (plus 5% when the estimate
    /// undercounts) — so a bytes-based estimate that overcounts a model's real tokenizer twice
    /// over stops refusing calls that fit its context window, and one that undercounts is raised.
    /// The context-window check uses it; the reservation uses it only where it is higher than
    /// the estimate (a hard budget's guarantee rests on reservations never being too small).
    pub(crate) fn calibrated(&self, estimate: u64) -> u64 {
        use std::sync::atomic::Ordering::Relaxed;
        if self.ratio_seen.load(Relaxed) < Self::CALIBRATE_AFTER {
            return estimate;
        }
        let mut ppm = self.ratio_ppm.load(Relaxed);
        if ppm > 1_000_000 {
            ppm = ppm.saturating_mul(105) / 100;
        }
        u64::try_from((u128::from(estimate) * u128::from(ppm)).div_ceil(1_000_000))
            .unwrap_or(u64::MAX)
    }

    /// Learns from a call whose prompt was estimated at `estimate` and billed `billed`.
    pub(crate) fn learn(&self, billed: u64, estimate: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        if estimate == 0 {
            return;
        }
        let ppm = u64::try_from(u128::from(billed) * 1_000_000 / u128::from(estimate))
            .unwrap_or(u64::MAX);
        self.ratio_ppm.fetch_max(ppm, Relaxed);
        self.ratio_seen.fetch_add(1, Relaxed);
    }
}

/// What the plan needs to give each rung its energy figure.
pub(super) struct EnergySetup {
    pub(super) cpu: Arc<baton_core::CpuPower>,
    pub(super) pue: f64,
}

/// One rung of `agent`'s ladder: model `m` with its price, limits and metric handles.
pub(super) fn make_rung(
    agent: &str,
    m: &Arc<str>,
    models: &super::build::Models,
    energy: &EnergySetup,
) -> Result<Rung, RuntimeError> {
    let agent_label = agent.to_string();
    let (model, def) = models
        .get(m)
        .map(|(model, def)| (Arc::clone(model), def))
        .ok_or_else(|| RuntimeError::Setup {
            kind: crate::error::Component::Model,
            name: m.to_string(),
            message: "not declared in the topology".into(),
        })?;
    let labels = [("agent", agent_label.clone()), ("model", m.to_string())];
    let tok = |kind: &'static str| metrics::counter!("baton_tokens_total", "agent" => agent_label.clone(), "model" => m.to_string(), "kind" => kind);
    let rung_energy = match (def.provider, def.size) {
        (Provider::Local, _) => RungEnergy::Cpu(Arc::clone(&energy.cpu)),
        (_, Some((size, _))) => RungEnergy::Hosted {
            size,
            pue: energy.pue,
        },
        (_, None) => RungEnergy::Unknown,
    };
    Ok(Rung {
        name: Arc::clone(m),
        model,
        price: def.price,
        max_output: def.max_output_tokens,
        quality: def.quality,
        local: def.tier == Some(baton_topologies::Tier::Local),
        context_window: def.context_window.map(u64::from),
        timeout: def.timeout,
        tool_tokens: 0,
        retry: def.retry.clone(),
        retries: metrics::counter!("baton_model_retries_total", &labels[..]),
        estimate_ratio: metrics::histogram!("baton_token_estimate_ratio", "model" => m.to_string()),
        requests_ok: metrics::counter!("baton_model_requests_total", "agent" => agent_label.clone(), "model" => m.to_string(), "outcome" => "ok"),
        requests_err: metrics::counter!("baton_model_requests_total", "agent" => agent_label.clone(), "model" => m.to_string(), "outcome" => "error"),
        estimated: metrics::counter!("baton_model_usage_estimated_total", "agent" => agent_label.clone(), "model" => m.to_string()),
        ratio_ppm: std::sync::atomic::AtomicU64::new(0),
        ratio_seen: std::sync::atomic::AtomicU64::new(0),
        truncated: metrics::counter!("baton_model_replies_truncated_total", "agent" => agent_label.clone(), "model" => m.to_string()),
        latency: metrics::histogram!("baton_model_request_duration_seconds", &labels[..]),
        cpu: metrics::histogram!("baton_model_cpu_seconds", &labels[..]),
        cost: metrics::counter!("baton_cost_nanousd_total", &labels[..]),
        decisions: ROUTE_REASONS.map(|reason| {
            metrics::counter!("baton_router_decisions_total", "agent" => agent_label.clone(), "model" => m.to_string(), "reason" => reason)
        }),
        tokens_in: tok("input"),
        tokens_out: tok("output"),
        tokens_cached: tok("cached_input"),
        energy_uj: ENERGY_METHODS.map(|method| {
            metrics::counter!("baton_energy_uj_total", "kind" => "model", "method" => method, "model" => m.to_string())
        }),
        energy: rung_energy,
    })
}

/// The methods an energy counter is labelled with (`unknown` figures are not counted).
pub(crate) const ENERGY_METHODS: [&str; 2] = ["measured", "estimated"];

/// How a rung's calls get their energy figure.
pub(crate) enum RungEnergy {
    /// EcoLogits' estimate from the model's size and the output tokens.
    Hosted {
        size: baton_core::ModelSize,
        pue: f64,
    },
    /// The call's CPU time on this machine × the power per core.
    Cpu(Arc<baton_core::CpuPower>),
    /// The model's size is not known: no figure.
    Unknown,
}

impl RungEnergy {
    /// The energy of a call that generated `output` tokens using `cpu` of this machine's time.
    pub(crate) fn of(&self, output: u64, cpu: Duration) -> baton_core::Energy {
        match self {
            RungEnergy::Hosted { size, pue } => baton_core::Energy::from_joules(
                baton_core::hosted_joules(*size, output, *pue),
                baton_core::EnergyMethod::Estimated,
            ),
            RungEnergy::Cpu(power) => power.energy(cpu),
            RungEnergy::Unknown => baton_core::Energy::UNKNOWN,
        }
    }
}

/// Counts an energy figure on the `[measured, estimated]` counters.
pub(crate) fn count_energy(counters: &[Counter; 2], e: baton_core::Energy) {
    match e.method {
        baton_core::EnergyMethod::Measured => counters[0].increment(e.microjoules),
        baton_core::EnergyMethod::Estimated => counters[1].increment(e.microjoules),
        baton_core::EnergyMethod::Unknown => {}
    }
}
