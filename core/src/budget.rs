//! Budgets: the limits a task runs under.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::money::NanoUsd;

/// Optional limits on a task. `None` means "no limit of this kind at this level" (an ancestor's limit
/// still applies through the ledger).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Budget {
    /// Hard ceiling on money; enforced by reservation, never overspent.
    pub max_cost: Option<NanoUsd>,
    /// Hard ceiling on input + output tokens; enforced by reservation.
    pub max_tokens: Option<u64>,
    /// Loop iterations before the task ends `max_steps`.
    pub max_steps: Option<u32>,
    /// Wall-clock time before the task ends `timed_out`.
    pub max_wall: Option<Duration>,
}

impl Budget {
    /// No limits at all.
    pub const UNLIMITED: Budget = Budget {
        max_cost: None,
        max_tokens: None,
        max_steps: None,
        max_wall: None,
    };

    /// The tighter of two budgets, limit by limit.
    pub fn tightest(&self, other: &Budget) -> Budget {
        fn min<T: Ord + Copy>(a: Option<T>, b: Option<T>) -> Option<T> {
            match (a, b) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, None) => a,
                (None, b) => b,
            }
        }
        Budget {
            max_cost: min(self.max_cost, other.max_cost),
            max_tokens: min(self.max_tokens, other.max_tokens),
            max_steps: min(self.max_steps, other.max_steps),
            max_wall: min(self.max_wall, other.max_wall),
        }
    }
}

/// Parses `250ms`, `30s`, `5m`, `2h` (one number, one unit).
///
/// # Errors
/// [`crate::Error::InvalidDuration`] for anything else.
pub fn parse_duration(text: &str) -> Result<Duration, crate::Error> {
    let bad = || crate::Error::InvalidDuration {
        input: text.to_string(),
    };
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| bad())?;
    match unit.trim() {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" | "min" => Ok(Duration::from_secs(n.saturating_mul(60))),
        "h" => Ok(Duration::from_secs(n.saturating_mul(3600))),
        _ => Err(bad()),
    }
}

/// Renders a duration the way [`parse_duration`] reads it.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(3_600_000) && ms > 0 {
        format!("{}h", ms / 3_600_000)
    } else if ms.is_multiple_of(60_000) && ms > 0 {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1000) && ms > 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serde_helpers::{duration_opt, duration_req, duration_schema};

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("-1s").is_err());
        assert_eq!(format_duration(Duration::from_secs(300)), "5m");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
        // Each unit, both ways: the largest unit that divides it exactly is the one written.
        for (text, d) in [
            ("0ms", Duration::ZERO),
            ("250ms", Duration::from_millis(250)),
            ("30s", Duration::from_secs(30)),
            ("90s", Duration::from_secs(90)),
            ("5m", Duration::from_secs(300)),
            ("90m", Duration::from_secs(5_400)),
            ("2h", Duration::from_secs(7_200)),
        ] {
            assert_eq!(parse_duration(text).unwrap(), d, "{text}");
            assert_eq!(format_duration(d), text, "{d:?}");
        }
        assert_eq!(parse_duration("3min").unwrap(), Duration::from_secs(180));
    }

    #[test]
    fn tightest_takes_each_minimum() {
        let a = Budget {
            max_cost: Some(NanoUsd(10)),
            max_steps: Some(3),
            ..Budget::default()
        };
        let b = Budget {
            max_cost: Some(NanoUsd(5)),
            max_tokens: Some(100),
            ..Budget::default()
        };
        let t = a.tightest(&b);
        assert_eq!(t.max_cost, Some(NanoUsd(5)));
        assert_eq!(t.max_steps, Some(3));
        assert_eq!(t.max_tokens, Some(100));
        assert_eq!(t.max_wall, None);
    }

    /// The serde helpers topology fields use: `30s` in, `30s` out; absent is `None`; a bad
    /// duration is an error naming it; the schema says the same pattern.
    #[test]
    fn durations_through_serde() {
        #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
        struct T {
            #[serde(with = "duration_req")]
            every: Duration,
            #[serde(default, with = "duration_opt")]
            wall: Option<Duration>,
        }
        let t: T = serde_json::from_str(r#"{"every": "90s", "wall": "5m"}"#).expect("valid");
        assert_eq!(
            t,
            T {
                every: Duration::from_secs(90),
                wall: Some(Duration::from_secs(300)),
            }
        );
        assert_eq!(
            serde_json::to_string(&t).expect("json"),
            r#"{"every":"90s","wall":"5m"}"#
        );
        let t: T = serde_json::from_str(r#"{"every": "250ms"}"#).expect("valid");
        assert_eq!((t.every, t.wall), (Duration::from_millis(250), None));
        assert_eq!(
            serde_json::to_string(&t).expect("json"),
            r#"{"every":"250ms","wall":null}"#
        );
        let e = serde_json::from_str::<T>(r#"{"every": "soon"}"#).expect_err("bad");
        assert!(e.to_string().contains("soon"), "{e}");
        let e = serde_json::from_str::<T>(r#"{"every": "1s", "wall": "later"}"#).expect_err("bad");
        assert!(e.to_string().contains("later"), "{e}");
        let schema = duration_schema(&mut schemars::SchemaGenerator::default());
        assert_eq!(
            schema.get("pattern").and_then(|p| p.as_str()),
            Some("^[0-9]+ *(ms|s|m|min|h)$")
        );
    }
}
