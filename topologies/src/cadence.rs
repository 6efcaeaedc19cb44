//! When a standing loop runs: a fixed period (`every:`) or a cron expression read in a time zone.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use croner::Cron;
use croner::parser::{CronParser, Seconds};
use jiff::Timestamp;
use jiff::tz::TimeZone;

/// When a schedule's runs start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cadence {
    /// Every so often, the first run at once.
    Every(Duration),
    /// At the times of a cron expression.
    Cron(CronSchedule),
}

impl Cadence {
    /// The shortest gap between two runs (for a cron expression, over its next occurrences).
    pub fn min_gap(&self) -> Duration {
        match self {
            Cadence::Every(d) => *d,
            Cadence::Cron(c) => c.min_gap(),
        }
    }
}

impl fmt::Display for Cadence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cadence::Every(d) => write!(f, "every {}", baton_core::format_duration(*d)),
            Cadence::Cron(c) => write!(f, "at `{}` ({})", c.expr, c.zone_name),
        }
    }
}

/// A parsed cron expression and the time zone it is read in.
#[derive(Clone)]
pub struct CronSchedule {
    expr: Arc<str>,
    zone_name: Arc<str>,
    cron: Arc<Cron>,
    zone: TimeZone,
}

/// Why a cron expression or a time zone was refused.
#[derive(Debug, thiserror::Error)]
pub enum CadenceError {
    /// The expression does not parse.
    #[error("`{expr}` is not a cron expression: {reason}")]
    Cron {
        /// The expression.
        expr: String,
        /// What the parser said.
        reason: String,
    },
    /// The expression never matches a time.
    #[error("`{0}` never matches a time")]
    Never(String),
    /// The time zone is not in the tz database.
    #[error("unknown time zone `{name}`: {reason}")]
    Zone {
        /// The name given.
        name: String,
        /// What the tz database said.
        reason: String,
    },
}

/// Why `expr` does not parse, in Baton's words: the field count, or the first field whose value
/// is out of its range; the parser's own words only when neither explains it.
fn explain_cron(expr: &str, parser_said: &str) -> String {
    const SHAPE: &str = "a cron expression has five fields (minute hour day-of-month month day-of-week), six with seconds first, or is @hourly, @daily, @weekly, @monthly or @yearly";
    let fields: Vec<&str> = expr.split_whitespace().collect();
    let names: &[(&str, u32, u32)] = match fields.len() {
        5 => &[
            ("minute", 0, 59),
            ("hour", 0, 23),
            ("day-of-month", 1, 31),
            ("month", 1, 12),
            ("day-of-week", 0, 7),
        ],
        6 => &[
            ("second", 0, 59),
            ("minute", 0, 59),
            ("hour", 0, 23),
            ("day-of-month", 1, 31),
            ("month", 1, 12),
            ("day-of-week", 0, 7),
        ],
        _ if expr.trim_start().starts_with('@') => {
            return format!("`{}` is not a known shorthand: {SHAPE}", expr.trim());
        }
        n => return format!("it has {n} field(s): {SHAPE}"),
    };
    for (field, (name, lo, hi)) in fields.iter().zip(names) {
        for value in field
            .split([',', '-', '/'])
            .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
        {
            if let Ok(v) = value.parse::<u32>()
                && !(*lo..=*hi).contains(&v)
            {
                return format!("the {name} field takes {lo} to {hi}, not {v}");
            }
        }
    }
    format!(
        "a field does not parse ({}); {SHAPE}",
        parser_said.trim_end_matches('.').to_lowercase()
    )
}

impl CronSchedule {
    /// Parses `expr` (five fields, or six with seconds first) to be read in the time zone
    /// `zone` (an IANA name; `None` is UTC).
    pub fn parse(expr: &str, zone: Option<&str>) -> Result<Self, CadenceError> {
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .build()
            .parse(expr.trim())
            .map_err(|e| CadenceError::Cron {
                expr: expr.to_string(),
                reason: explain_cron(expr, &e.to_string()),
            })?;
        let (zone, zone_name) = match zone {
            None => (TimeZone::UTC, "UTC"),
            Some(name) => (
                TimeZone::get(name).map_err(|_| CadenceError::Zone {
                    name: name.to_string(),
                    reason: "it is not in the IANA time zone database: write a name such as `Europe/Paris`, `America/New_York` or `UTC`".to_string(),
                })?,
                name,
            ),
        };
        let s = Self {
            expr: expr.trim().into(),
            zone_name: zone_name.into(),
            cron: Arc::new(cron),
            zone,
        };
        // An expression such as `0 0 30 2 *` (30 February) parses but never fires.
        if s.next_after(Timestamp::UNIX_EPOCH).is_none() {
            return Err(CadenceError::Never(expr.to_string()));
        }
        Ok(s)
    }

    /// The expression as written.
    pub fn expr(&self) -> &str {
        &self.expr
    }

    /// The time zone's name (`UTC` when none was given).
    pub fn zone_name(&self) -> &str {
        &self.zone_name
    }

    /// The first time strictly after `t` the expression matches, if any.
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        let zoned = t.to_zoned(self.zone.clone());
        self.cron
            .find_next_occurrence(&zoned, false)
            .ok()
            .map(|z| z.timestamp())
    }

    /// The shortest gap between consecutive occurrences over the next 64 of them from a fixed
    /// date (what a jitter must stay below).
    pub fn min_gap(&self) -> Duration {
        // 2026-01-01T00:00:00Z: a fixed start keeps validation deterministic.
        let mut at = Timestamp::from_second(1_767_225_600).unwrap_or(Timestamp::UNIX_EPOCH);
        let mut gap = Duration::MAX;
        let Some(mut prev) = self.next_after(at) else {
            return gap;
        };
        for _ in 0..64 {
            at = prev;
            let Some(next) = self.next_after(at) else {
                break;
            };
            let d = next.duration_since(prev).unsigned_abs();
            gap = gap.min(d);
            prev = next;
        }
        gap
    }
}

impl fmt::Debug for CronSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CronSchedule")
            .field("expr", &self.expr)
            .field("zone", &self.zone_name)
            .finish()
    }
}

impl PartialEq for CronSchedule {
    fn eq(&self, other: &Self) -> bool {
        self.expr == other.expr && self.zone_name == other.zone_name
    }
}

impl Eq for CronSchedule {}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("a timestamp")
    }

    #[test]
    fn five_fields_are_minutes_and_six_have_seconds() {
        let c = CronSchedule::parse("*/5 * * * *", None).expect("parses");
        assert_eq!(
            c.next_after(ts("2026-11-24T03:41:10Z")),
            Some(ts("2026-11-24T03:45:00Z"))
        );
        assert_eq!(c.min_gap(), Duration::from_secs(300));
        let c = CronSchedule::parse("*/10 * * * * *", None).expect("parses");
        assert_eq!(
            c.next_after(ts("2026-11-24T03:41:10Z")),
            Some(ts("2026-11-24T03:41:20Z"))
        );
        assert_eq!(c.min_gap(), Duration::from_secs(10));
    }

    #[test]
    fn a_time_zone_moves_the_hour() {
        let c = CronSchedule::parse("0 9 * * MON-FRI", Some("Europe/Paris")).expect("parses");
        // Tuesday 24 November 2026, 09:00 in Paris is 08:00 UTC (CET, +01:00).
        assert_eq!(
            c.next_after(ts("2026-11-24T03:00:00Z")),
            Some(ts("2026-11-24T08:00:00Z"))
        );
        // Friday evening → Monday morning.
        assert_eq!(
            c.next_after(ts("2026-11-27T10:00:00Z")),
            Some(ts("2026-11-30T08:00:00Z"))
        );
    }

    #[test]
    fn bad_expressions_and_zones_say_what_is_wrong() {
        let e = CronSchedule::parse("61 * * * *", None).expect_err("minute 61");
        assert_eq!(
            e.to_string(),
            "`61 * * * *` is not a cron expression: the minute field takes 0 to 59, not 61"
        );
        let e = CronSchedule::parse("0 9 * *", None).expect_err("four fields");
        assert!(
            e.to_string()
                .contains("it has 4 field(s): a cron expression has five"),
            "{e}"
        );
        let e = CronSchedule::parse("0 25 * * 1-5", None).expect_err("hour 25");
        assert!(
            e.to_string()
                .ends_with("the hour field takes 0 to 23, not 25"),
            "{e}"
        );
        let e = CronSchedule::parse("@fortnightly", None).expect_err("no such shorthand");
        assert!(e.to_string().contains("is not a known shorthand"), "{e}");
        let e = CronSchedule::parse("0 0 30 2 *", None).expect_err("30 February");
        assert_eq!(e.to_string(), "`0 0 30 2 *` never matches a time");
        let e = CronSchedule::parse("@hourly", Some("Mars/Olympus")).expect_err("no such zone");
        assert!(
            e.to_string()
                .starts_with("unknown time zone `Mars/Olympus`"),
            "{e}"
        );
    }
}
