//! Prometheus for Baton, as the CLI sets it up: a recorder with histogram buckets that fit
//! Baton's families (latency from a tenth of a millisecond, tool CPU time, estimate ratios,
//! workflow cost 1-2-5 per decade), every family's HELP text, and the exposition with
//! `baton_cost_usd_total` derived from the exact nano-dollar counter.
//!
//! The `metrics` facade has integer counters only, so money is counted exactly as
//! `baton_cost_nanousd_total`; [`render`] also writes `baton_cost_usd_total`, the same counter in
//! dollars, computed from the integer at scrape time (no float is ever accumulated). An embedder
//! serving its own `/metrics` calls [`install`] once and [`render`] per scrape: the dashboard in
//! `dashboards/` then reads the same series as from `baton run --metrics-addr`.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let handle = baton::metrics::install()?;
//! // ... start a runtime and run tasks; then, in your `/metrics` handler:
//! let exposition: String = baton::metrics::render(&handle);
//! assert!(exposition.is_empty() || exposition.contains("# TYPE"));
//! # Ok(()) }
//! ```

use std::fmt::Write as _;

use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};

/// Seconds: from a tenth of a millisecond (a local or scripted call) to two minutes (a slow
/// hosted model), 1-2.5-5 per decade.
const LATENCY_BUCKETS: &[f64] = &[
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0, 120.0,
];
const CPU_BUCKETS: &[f64] = &[0.000_01, 0.000_1, 0.001, 0.01, 0.1, 1.0, 10.0];
const RATIO_BUCKETS: &[f64] = &[0.25, 0.5, 0.75, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0];
/// Dollars per completed workflow, 1-2-5 per decade from $0.00001 to $10: a quantile read from
/// them is within the bucket's width (at most 2.5×, and within ~25% where runs cluster).
const COST_BUCKETS: &[f64] = &[
    0.000_01, 0.000_02, 0.000_05, 0.000_1, 0.000_2, 0.000_5, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05,
    0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0,
];

/// Joules per workflow, 1-10-100 per decade from a millijoule (a scripted run's tools) to a
/// megajoule (a long run on a large hosted model).
const ENERGY_BUCKETS: &[f64] = &[
    0.001,
    0.01,
    0.1,
    1.0,
    10.0,
    100.0,
    1_000.0,
    10_000.0,
    100_000.0,
    1_000_000.0,
];

/// Counters kept as exact integers and exposed, at scrape time, in base units too: (the
/// integer family, the derived family, the divisor, its HELP text).
const DERIVED: &[(&str, &str, u64, &str)] = &[
    (
        "baton_cost_nanousd_total",
        "baton_cost_usd_total",
        1_000_000_000,
        "Money booked in the ledger for model calls, in dollars (from baton_cost_nanousd_total).",
    ),
    (
        "baton_energy_uj_total",
        "baton_energy_joules_total",
        1_000_000,
        "Energy of model and tool calls, in joules, by kind, method (measured, estimated) and model (from baton_energy_uj_total).",
    ),
    (
        "baton_workflow_value_nanousd_total",
        "baton_workflow_value_usd_total",
        1_000_000_000,
        "Value produced by completed workflows, in dollars, by workflow (from baton_workflow_value_nanousd_total).",
    ),
];

/// Installs the Prometheus recorder (with Baton's buckets) for this process and describes every
/// metric family.
///
/// # Errors
/// When a recorder is already installed in this process, or a bucket list is empty.
pub fn install() -> Result<PrometheusHandle, BuildError> {
    install_with(PrometheusBuilder::new())
}

/// As [`install`], with a `topology` label on every series, naming the topology this process
/// runs (what the dashboard's `topology` variable selects). The CLI installs this one: a process
/// runs one topology, so the label multiplies no series within a process, and across a fleet the
/// series grow with the number of topologies deployed (the README's monitoring section states the
/// cardinality rules).
///
/// # Errors
/// As [`install`].
pub fn install_for_topology(topology: &str) -> Result<PrometheusHandle, BuildError> {
    install_with(PrometheusBuilder::new().add_global_label("topology", topology))
}

fn install_with(builder: PrometheusBuilder) -> Result<PrometheusHandle, BuildError> {
    let handle = builder
        .set_buckets_for_metric(
            Matcher::Full("baton_model_request_duration_seconds".into()),
            LATENCY_BUCKETS,
        )?
        .set_buckets_for_metric(
            Matcher::Full("baton_tool_duration_seconds".into()),
            LATENCY_BUCKETS,
        )?
        .set_buckets_for_metric(Matcher::Full("baton_tool_cpu_seconds".into()), CPU_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full("baton_model_cpu_seconds".into()), CPU_BUCKETS)?
        .set_buckets_for_metric(
            Matcher::Full("baton_token_estimate_ratio".into()),
            RATIO_BUCKETS,
        )?
        .set_buckets_for_metric(
            Matcher::Full("baton_workflow_cost_usd".into()),
            COST_BUCKETS,
        )?
        .set_buckets_for_metric(
            Matcher::Full("baton_workflow_energy_joules".into()),
            ENERGY_BUCKETS,
        )?
        .install_recorder()?;
    baton_actors::describe_metrics();
    Ok(handle)
}

/// The exposition text: the recorder's, plus the families derived from exact integer counters
/// (`baton_cost_usd_total`, `baton_energy_joules_total`, `baton_workflow_value_usd_total`).
pub fn render(handle: &PrometheusHandle) -> String {
    let mut text = handle.render();
    let mut extra = String::new();
    for &(from, to, divisor, help) in DERIVED {
        let mut lines = String::new();
        for line in text.lines() {
            let Some(rest) = line.strip_prefix(from) else {
                continue;
            };
            let Some((labels, value)) = rest.rsplit_once(' ') else {
                continue;
            };
            let Ok(n) = value.parse::<u64>() else {
                continue;
            };
            let width = divisor.ilog10() as usize;
            let _ = writeln!(
                lines,
                "{to}{labels} {}.{:0width$}",
                n / divisor,
                n % divisor
            );
        }
        if !lines.is_empty() {
            let _ = writeln!(extra, "# HELP {to} {help}");
            let _ = writeln!(extra, "# TYPE {to} counter");
            extra.push_str(&lines);
        }
    }
    if !extra.is_empty() {
        if !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&extra);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usd_counter_is_derived_exactly() {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            metrics::counter!("baton_cost_nanousd_total", "agent" => "a", "model" => "m")
                .increment(1_234_567_891);
        });
        let text = render(&handle);
        assert!(
            text.contains("# TYPE baton_cost_usd_total counter"),
            "{text}"
        );
        assert!(
            text.contains(r#"baton_cost_usd_total{agent="a",model="m"} 1.234567891"#),
            "{text}"
        );
    }
}
