use std::path::PathBuf;

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Deserialize;

use crate::tool::{Tool, ToolError, parse_args, schema_for};

/// The arguments of [`MetricsSeries`].
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MetricsSeriesArgs {
    /// Series name, e.g. checkout_p99_ms.
    pub series: String,
    /// Start time HH:MM (inclusive).
    #[serde(default)]
    pub from: Option<String>,
    /// End time HH:MM (inclusive).
    #[serde(default)]
    pub to: Option<String>,
}

/// Queries a metrics series stored as CSV lines `HH:MM,value` in `<dir>/<series>.csv`, and reports its
/// baseline and the first spike (a point at least 1.5× the baseline, the median of the window's
/// first half).
#[derive(Debug, Clone)]
pub struct MetricsSeries {
    name: String,
    dir: PathBuf,
    /// The argument schema, with the folder's series listed (read once, at first use).
    schema: std::sync::Arc<std::sync::OnceLock<serde_json::Value>>,
}

/// Up to this many series are listed in the schema (`enum`); a larger folder is described by
/// the pattern only.
const LISTED_SERIES: usize = 100;

impl MetricsSeries {
    /// A tool named `name` over the series in `dir`.
    pub fn new(name: impl Into<String>, dir: impl Into<PathBuf>) -> MetricsSeries {
        MetricsSeries {
            name: name.into(),
            dir: dir.into(),
            schema: Default::default(),
        }
    }
}

#[async_trait]
impl Tool for MetricsSeries {
    fn name(&self) -> &str {
        &self.name
    }
    fn description(&self) -> &str {
        "Query a metrics time series: baseline, first spike and peak within an optional time window."
    }
    /// The arguments' schema, with `series` an `enum` of the folder's series (when it has at
    /// most 100): a model sees the names it may use, and a grammar-constrained model (`provider:
    /// local`) can only write one of them.
    fn parameters(&self) -> serde_json::Value {
        self.schema
            .get_or_init(|| {
                let mut schema = schema_for::<MetricsSeriesArgs>();
                let mut names: Vec<String> = std::fs::read_dir(&self.dir)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .filter_map(|e| {
                        let name = e.file_name().into_string().ok()?;
                        name.strip_suffix(".csv").map(str::to_string)
                    })
                    .collect();
                names.sort();
                if !names.is_empty()
                    && names.len() <= LISTED_SERIES
                    && let Some(series) = schema.pointer_mut("/properties/series")
                {
                    series["enum"] = serde_json::json!(names);
                }
                schema
            })
            .clone()
    }
    async fn call(
        &self,
        _cx: &crate::tool::ToolContext<'_>,
        args: serde_json::Value,
    ) -> Result<String, ToolError> {
        let args: MetricsSeriesArgs = parse_args(args)?;
        let series = args.series.as_str();
        if series.is_empty()
            || !series
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(ToolError::InvalidArguments(format!(
                "series `{series}`: use letters, digits, `_` and `-` only"
            )));
        }
        let (from, to) = (args.from.as_deref(), args.to.as_deref());
        let path = self.dir.join(format!("{series}.csv"));
        let text = match super::read(&path).await {
            Ok(t) => t,
            Err(_) => return Err(ToolError::Failed(format!("no series named `{series}`"))),
        };
        let mut points: Vec<(&str, f64)> = Vec::new();
        for line in text.lines() {
            let Some((t, v)) = line.split_once(',') else {
                continue;
            };
            let (t, v) = (t.trim(), v.trim());
            let Ok(v) = v.parse::<f64>() else { continue }; // header or comment
            if from.is_some_and(|f| t < f) || to.is_some_and(|e| t > e) {
                continue;
            }
            points.push((t, v));
        }
        if points.is_empty() {
            return Ok(format!("{series}: no points in the window"));
        }
        let mut head: Vec<f64> = points[..points.len().div_ceil(2)]
            .iter()
            .map(|p| p.1)
            .collect();
        head.sort_by(f64::total_cmp);
        let baseline = head[head.len() / 2];
        let (peak_t, peak) = points
            .iter()
            .copied()
            .fold(points[0], |a, b| if b.1 > a.1 { b } else { a });
        let spike = points.iter().find(|p| p.1 >= baseline * 1.5);
        let window = format!("{}-{}", points[0].0, points[points.len() - 1].0);
        Ok(match spike {
            Some((t, v)) => format!(
                "{series} {window} ({} points): baseline {baseline}; spike at {t}: {v} ({:.1}x baseline); peak {peak} at {peak_t}",
                points.len(),
                v / baseline
            ),
            None => format!(
                "{series} {window} ({} points): baseline {baseline}; no spike (peak {peak} at {peak_t})",
                points.len()
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn finds_spike() {
        let dir = std::env::temp_dir().join(format!("baton-ms-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("lat.csv"),
            "time,ms\n14:00,100\n14:01,110\n14:02,105\n14:03,160\n14:04,200\n",
        )
        .unwrap();
        let t = MetricsSeries::new("q", &dir);
        // The schema lists the folder's series: a model (or a grammar) sees the names it may use.
        assert_eq!(
            t.parameters()["properties"]["series"]["enum"],
            json!(["lat"])
        );
        let out = t
            .call(
                &crate::tool::ToolContext::new("test", crate::TaskId(1)),
                json!({"series": "lat"}),
            )
            .await
            .unwrap();
        assert!(out.contains("baseline 105"), "{out}");
        assert!(out.contains("spike at 14:03: 160"), "{out}");
        assert!(out.contains("peak 200 at 14:04"), "{out}");
        let out = t
            .call(
                &crate::tool::ToolContext::new("test", crate::TaskId(1)),
                json!({"series": "lat", "to": "14:02"}),
            )
            .await
            .unwrap();
        assert!(out.contains("no spike"), "{out}");
        // A series outside the folder, which exists and parses: the guard, not a missing file,
        // must refuse it.
        let outside = dir.with_file_name(format!("baton-ms-outside-{}", std::process::id()));
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("secret.csv"), "time,ms\n14:00,1\n14:01,2\n").unwrap();
        let escape = format!(
            "../{}/secret",
            outside.file_name().and_then(|n| n.to_str()).unwrap()
        );
        let e = t
            .call(
                &crate::tool::ToolContext::new("test", crate::TaskId(1)),
                json!({"series": escape}),
            )
            .await
            .expect_err("outside");
        assert!(!e.to_string().contains("baseline"), "{e}");
        assert!(
            t.call(
                &crate::tool::ToolContext::new("test", crate::TaskId(1)),
                json!({"series": "../etc/passwd"})
            )
            .await
            .is_err()
        );
        assert!(
            t.call(
                &crate::tool::ToolContext::new("test", crate::TaskId(1)),
                json!({})
            )
            .await
            .is_err()
        );
    }
}
