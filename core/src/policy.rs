//! The harness's policy, evaluated before every tool call — never by the model: which tools a
//! role may call, change-freeze windows for destructive effects, dry-run-first, and human approval.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::Value;

use crate::tool::Effect;

/// A change-freeze window, in Unix seconds (UTC).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Freeze {
    /// Start (inclusive).
    pub from: u64,
    /// End (exclusive).
    pub to: u64,
    /// Why, shown with a denial.
    pub reason: String,
    /// Dry runs are refused too (by default a dry run, which changes nothing, is allowed
    /// during a freeze).
    pub block_dry_runs: bool,
}

/// The policy of a topology.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// Role → tools it may call (`delegate` is always allowed).
    pub roles: BTreeMap<String, BTreeSet<String>>,
    /// Windows during which destructive calls are refused (their dry runs are allowed, unless
    /// the window says `block_dry_runs`).
    pub freeze: Vec<Freeze>,
    /// A destructive call must have run with `dry_run: true` and the same arguments earlier in
    /// the task.
    pub dry_run_first: bool,
    /// Destructive calls need a human's approval.
    pub approval: bool,
    /// How long an approval may take before it counts as denied.
    pub approval_timeout: Duration,
}

/// What the policy says about a call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Go ahead.
    Allow,
    /// Go ahead once a human approves.
    NeedsApproval,
    /// Refused by `rule`, for `reason`.
    Deny {
        /// `role`, `freeze`, `dry_run_first`.
        rule: &'static str,
        /// Why.
        reason: String,
    },
}

/// Whether `args` ask for a dry run.
pub fn is_dry_run(args: &Value) -> bool {
    args.get("dry_run").and_then(Value::as_bool) == Some(true)
}

/// `args` without `dry_run`: what a later real call must match.
pub fn without_dry_run(args: &Value) -> Value {
    match args {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| *k != "dry_run")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        other => other.clone(),
    }
}

impl Policy {
    /// Judges a call of `tool` (with `effect` and `args`) by an agent with `role`, at `now`
    /// (Unix seconds), given the dry runs already made in the task (`(tool, args without dry_run)`).
    pub fn check(
        &self,
        role: Option<&str>,
        tool: &str,
        effect: Effect,
        args: &Value,
        dry_runs: &[(String, Value)],
        now: u64,
    ) -> Verdict {
        if let Some(role) = role {
            let allowed = self
                .roles
                .get(role)
                .is_some_and(|tools| tools.contains(tool));
            if !allowed {
                return Verdict::Deny {
                    rule: "role",
                    reason: format!("role `{role}` may not call `{tool}`"),
                };
            }
        }
        if effect != Effect::Destructive {
            return Verdict::Allow;
        }
        // `args` reach here with `dry_run: true` only for a tool that honours it (the harness
        // judges a dry-run flag to any other tool as the real call): such a dry run changes
        // nothing, so a freeze lets it through unless it blocks dry runs too.
        let dry = is_dry_run(args);
        if let Some(f) = self.freeze_at(now).filter(|f| !dry || f.block_dry_runs) {
            return Verdict::Deny {
                rule: "freeze",
                reason: format!("change freeze in force: {}", f.reason),
            };
        }
        if dry {
            return Verdict::Allow;
        }
        if self.dry_run_first {
            let wanted = without_dry_run(args);
            if !dry_runs.iter().any(|(t, a)| t == tool && *a == wanted) {
                return Verdict::Deny {
                    rule: "dry_run_first",
                    reason: format!(
                        "`{tool}` is destructive: call it with `dry_run: true` and the same arguments first"
                    ),
                };
            }
        }
        if self.approval {
            Verdict::NeedsApproval
        } else {
            Verdict::Allow
        }
    }
}

impl Policy {
    /// The change-freeze window in force at `now` (Unix seconds), if any.
    pub fn freeze_at(&self, now: u64) -> Option<&Freeze> {
        self.freeze.iter().find(|f| f.from <= now && now < f.to)
    }
}

/// Parses `2026-12-20T00:00:00Z` (UTC, seconds precision) to Unix seconds.
///
/// # Errors
/// A description of what is wrong.
pub fn parse_utc(text: &str) -> Result<u64, String> {
    let bad = || format!("`{text}` is not a UTC time like 2026-12-20T00:00:00Z");
    let t = text.trim();
    let t = t.strip_suffix('Z').ok_or_else(bad)?;
    let (date, time) = t.split_once('T').ok_or_else(bad)?;
    let d: Vec<i64> = date
        .split('-')
        .map(|p| p.parse().map_err(|_| bad()))
        .collect::<Result<_, _>>()?;
    let h: Vec<i64> = time
        .split(':')
        .map(|p| p.parse().map_err(|_| bad()))
        .collect::<Result<_, _>>()?;
    let ([y, m, day], [hh, mm, ss]) = (d.as_slice(), h.as_slice()) else {
        return Err(bad());
    };
    if !(1..=12).contains(m)
        || !(1..=31).contains(day)
        || !(0..24).contains(hh)
        || !(0..60).contains(mm)
        || !(0..61).contains(ss)
    {
        return Err(bad());
    }
    // Days from civil (Howard Hinnant).
    let y = if *m <= 2 { y - 1 } else { *y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + hh * 3600 + mm * 60 + ss).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy() -> Policy {
        Policy {
            roles: BTreeMap::from([(
                "responder".into(),
                BTreeSet::from(["restart".to_string(), "read".to_string()]),
            )]),
            freeze: vec![Freeze {
                from: parse_utc("2026-12-20T00:00:00Z").expect("time"),
                to: parse_utc("2027-01-02T00:00:00Z").expect("time"),
                reason: "holiday freeze".into(),
                block_dry_runs: false,
            }],
            dry_run_first: true,
            approval: true,
            approval_timeout: Duration::from_secs(60),
        }
    }

    #[test]
    fn utc_times() {
        assert_eq!(parse_utc("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_utc("2026-11-24T00:00:00Z"), Ok(1_795_478_400));
        assert!(parse_utc("2026-13-01T00:00:00Z").is_err());
        assert!(parse_utc("tomorrow").is_err());
    }

    #[test]
    fn each_rule() {
        let p = policy();
        let now = parse_utc("2026-11-24T12:00:00Z").expect("time");
        let svc = json!({"service": "checkout-api"});
        let dry = json!({"service": "checkout-api", "dry_run": true});
        assert!(matches!(
            p.check(Some("intern"), "read", Effect::Read, &svc, &[], now),
            Verdict::Deny { rule: "role", .. }
        ));
        assert_eq!(
            p.check(Some("responder"), "read", Effect::Read, &svc, &[], now),
            Verdict::Allow
        );
        assert!(matches!(
            p.check(None, "restart", Effect::Destructive, &svc, &[], now),
            Verdict::Deny {
                rule: "dry_run_first",
                ..
            }
        ));
        assert_eq!(
            p.check(None, "restart", Effect::Destructive, &dry, &[], now),
            Verdict::Allow
        );
        let done = [("restart".to_string(), without_dry_run(&dry))];
        assert_eq!(
            p.check(None, "restart", Effect::Destructive, &svc, &done, now),
            Verdict::NeedsApproval
        );
        let other = json!({"service": "search-api"});
        assert!(matches!(
            p.check(None, "restart", Effect::Destructive, &other, &done, now),
            Verdict::Deny {
                rule: "dry_run_first",
                ..
            }
        ));
        // During a freeze: the real call is refused, even after its dry run; the dry run itself
        // changes nothing and goes ahead, unless the window blocks dry runs too.
        let frozen = parse_utc("2026-12-24T12:00:00Z").expect("time");
        assert_eq!(
            p.check(None, "restart", Effect::Destructive, &dry, &[], frozen),
            Verdict::Allow
        );
        assert!(matches!(
            p.check(None, "restart", Effect::Destructive, &svc, &done, frozen),
            Verdict::Deny { rule: "freeze", .. }
        ));
        let mut strict = p.clone();
        strict.freeze[0].block_dry_runs = true;
        assert!(matches!(
            strict.check(None, "restart", Effect::Destructive, &dry, &[], frozen),
            Verdict::Deny { rule: "freeze", .. }
        ));
        // A role is checked first, freeze or not.
        assert!(matches!(
            p.check(
                Some("intern"),
                "restart",
                Effect::Destructive,
                &dry,
                &[],
                frozen
            ),
            Verdict::Deny { rule: "role", .. }
        ));
    }
}
