//! `schedules:` resolved and checked: cadences, budgets per run, hour and day, breakers.

use super::*;

impl Validator<'_> {
    /// The topology-level `budget:`: non-zero limits, each period's inside the longer one's.
    /// `ledger:`: a PostgreSQL URL or a reference to one, without an inline password.
    pub(super) fn check_ledger(&mut self, spec: &TopologySpec) -> Option<String> {
        let l = spec.ledger.as_ref()?;
        let at = [Seg::Key("ledger"), Seg::Key("postgres")];
        let url = l.postgres.trim();
        let reference = url.starts_with("${") && url.ends_with('}');
        if !reference && !url.starts_with("postgres://") && !url.starts_with("postgresql://") {
            self.report(
                &at,
                format!("`{url}` is not a PostgreSQL URL"),
                Some("write `postgres://user@host:5432/db`, or `\"${DATABASE_URL}\"` to read it from the environment".into()),
            );
            return None;
        }
        let authority = url
            .split_once("://")
            .map_or("", |(_, rest)| rest.split(['/', '?']).next().unwrap_or(""));
        if let Some((user, _)) = authority.rsplit_once('@')
            && let Some((_, password)) = user.split_once(':')
            && !(password.starts_with("${") && password.ends_with('}'))
        {
            self.report(
                &at,
                "the URL holds a password inline".into(),
                Some("keep it out of the file: `\"${DATABASE_URL}\"`, or `postgres://user:${PGPASSWORD}@host/db`".into()),
            );
            return None;
        }
        Some(url.to_string())
    }

    pub(super) fn check_budget(&mut self, spec: &TopologySpec) -> TopologyBudget {
        let Some(b) = &spec.budget else {
            return TopologyBudget::default();
        };
        let at = |k: &'static str| [Seg::Key("budget"), Seg::Key(k)];
        for (key, v) in [
            ("max_usd", b.max_usd),
            ("max_usd_per_hour", b.max_usd_per_hour),
            ("max_usd_per_day", b.max_usd_per_day),
        ] {
            if v.is_some_and(|u| u.0 == NanoUsd::ZERO) {
                self.report(
                    &at(key),
                    format!("`{key}` must be more than zero: a zero budget can never run"),
                    None,
                );
            }
        }
        for (short, long, short_key, long_key) in [
            (
                b.max_usd_per_hour,
                b.max_usd_per_day,
                "max_usd_per_hour",
                "max_usd_per_day",
            ),
            (b.max_usd_per_day, b.max_usd, "max_usd_per_day", "max_usd"),
            (b.max_usd_per_hour, b.max_usd, "max_usd_per_hour", "max_usd"),
        ] {
            if let (Some(s), Some(l)) = (short, long)
                && s.0 > l.0
            {
                self.report(
                    &at(short_key),
                    format!("`{short_key}` is more than `{long_key}`"),
                    Some(format!(
                        "`{short_key}` could never bind: lower it, or raise `{long_key}`"
                    )),
                );
            }
        }
        TopologyBudget {
            max: b.max_usd.map(|u| u.0),
            per_hour: b.max_usd_per_hour.map(|u| u.0),
            per_day: b.max_usd_per_day.map(|u| u.0),
        }
    }

    pub(super) fn check_schedules(&mut self, spec: &TopologySpec) -> Vec<ScheduleDef> {
        let mut out = Vec::new();
        for (name, s) in &spec.schedules {
            let at = |k: &'static str| [Seg::Key("schedules"), Seg::Key(name), Seg::Key(k)];
            let cadence = self.check_cadence(name, s);
            if let (Some(j), Some(c)) = (s.jitter, &cadence)
                && j >= c.min_gap()
            {
                self.report(
                    &at("jitter"),
                    format!(
                        "`jitter` must be shorter than the time between runs ({})",
                        baton_core::format_duration(c.min_gap())
                    ),
                    Some("a jitter as long as the period would let runs pile up".into()),
                );
            }
            if s.task.trim().is_empty() {
                self.report(&at("task"), "a schedule needs a task".into(), None);
            }
            if s.per_day_usd.is_some_and(|u| u.0 == NanoUsd::ZERO) {
                self.report(
                    &at("per_day_usd"),
                    "a zero daily budget can never run".into(),
                    None,
                );
            }
            if s.per_hour_usd.is_some_and(|u| u.0 == NanoUsd::ZERO) {
                self.report(
                    &at("per_hour_usd"),
                    "a zero hourly budget can never run".into(),
                    None,
                );
            }
            if let (Some(h), Some(d)) = (s.per_hour_usd, s.per_day_usd)
                && h.0 > d.0
            {
                self.report(
                    &at("per_hour_usd"),
                    "`per_hour_usd` is more than `per_day_usd`".into(),
                    Some(
                        "the hourly limit could never bind: lower it, or raise the daily one"
                            .into(),
                    ),
                );
            }
            let b = &s.budget;
            if b.max_usd.is_some_and(|u| u.0 == NanoUsd::ZERO)
                || b.max_steps == Some(0)
                || b.max_tokens == Some(0)
            {
                self.report(&at("budget"), "limits must be more than zero".into(), None);
            }
            out.push(ScheduleDef {
                name: name.as_str().into(),
                cadence: cadence.unwrap_or(Cadence::Every(Duration::MAX)),
                task: s.task.clone(),
                budget: Budget {
                    max_cost: b.max_usd.map(|u| u.0),
                    max_tokens: b.max_tokens,
                    max_steps: b.max_steps,
                    max_wall: b.max_wall,
                },
                per_day: s.per_day_usd.map(|u| u.0),
                per_hour: s.per_hour_usd.map(|u| u.0),
                overlap: s.overlap.unwrap_or_default(),
                jitter: s.jitter.unwrap_or_default(),
                breaker: s.breaker.as_ref().map(|b| self.check_breaker(name, b, s)),
                on_interrupted: s.on_interrupted.unwrap_or_default(),
                value: s.value.as_ref().map(|v| {
                    self.check_value(
                        &[Seg::Key("schedules"), Seg::Key(name), Seg::Key("value")],
                        v,
                    )
                }),
            });
        }
        out
    }

    /// A schedule's cadence: `every` or `cron` (with its `timezone`), exactly one of them.
    fn check_cadence(&mut self, name: &str, s: &crate::spec::ScheduleSpec) -> Option<Cadence> {
        let at = |k: &'static str| [Seg::Key("schedules"), Seg::Key(name), Seg::Key(k)];
        match (s.every, &s.cron) {
            (Some(_), Some(_)) => {
                self.report(
                    &at("cron"),
                    "a schedule has `every` or `cron`, not both".into(),
                    Some("keep the one that says when it should run".into()),
                );
                None
            }
            (None, None) => {
                self.report(
                    &[Seg::Key("schedules"), Seg::Key(name)],
                    "a schedule needs `every` or `cron`".into(),
                    Some("e.g. `every: 5m`, or `cron: \"*/5 * * * *\"`".into()),
                );
                None
            }
            (Some(every), None) => {
                if every.is_zero() {
                    self.report(
                        &at("every"),
                        "`every` must be longer than zero".into(),
                        None,
                    );
                }
                if s.timezone.is_some() {
                    self.report(
                        &at("timezone"),
                        "`timezone` only applies to `cron`".into(),
                        Some("`every` counts from the loop's start".into()),
                    );
                }
                Some(Cadence::Every(every))
            }
            (None, Some(expr)) => match CronSchedule::parse(expr, s.timezone.as_deref()) {
                Ok(c) => Some(Cadence::Cron(c)),
                Err(e @ CadenceError::Zone { .. }) => {
                    self.report(
                        &at("timezone"),
                        e.to_string(),
                        Some("an IANA name such as `Europe/Paris` or `UTC`".into()),
                    );
                    None
                }
                Err(e @ CadenceError::Never(_)) => {
                    self.report(
                        &at("cron"),
                        e.to_string(),
                        Some("no date has all its fields: check the day against the month".into()),
                    );
                    None
                }
                Err(e) => {
                    self.report(
                        &at("cron"),
                        e.to_string(),
                        Some(
                            "five fields (minute hour day-of-month month day-of-week), \
                                 or six with seconds first; e.g. `*/5 * * * *`"
                                .into(),
                        ),
                    );
                    None
                }
            },
        }
    }

    pub(super) fn check_breaker(
        &mut self,
        name: &str,
        b: &crate::spec::BreakerSpec,
        s: &crate::spec::ScheduleSpec,
    ) -> BreakerDef {
        let at = |k: &'static str| {
            [
                Seg::Key("schedules"),
                Seg::Key(name),
                Seg::Key("breaker"),
                Seg::Key(k),
            ]
        };
        if b.window.is_zero() {
            self.report(
                &at("window"),
                "`window` must be longer than zero".into(),
                None,
            );
        }
        if b.cool_down.is_some_and(|c| c.is_zero()) {
            self.report(
                &at("cool_down"),
                "`cool_down` must be longer than zero".into(),
                None,
            );
        }
        if b.max_usd.is_some_and(|u| u.0 == NanoUsd::ZERO) {
            self.report(
                &at("max_usd"),
                "a zero limit would open the breaker after any spend".into(),
                None,
            );
        }
        if b.spike.is_some_and(|s| s < 2) {
            self.report(
                &at("spike"),
                "`spike` must be at least 2".into(),
                Some("it is a multiple of the median run's cost: 2 means twice as much".into()),
            );
        }
        let min_roi_permille = match b.min_roi {
            Some(r) if !(r.is_finite() && r > 0.0 && r <= 1_000_000.0) => {
                self.report(
                    &at("min_roi"),
                    format!("`min_roi: {r}` is not a return on spend"),
                    Some(
                        "value per dollar spent, above 0: `1.0` means the loop must pay for itself"
                            .into(),
                    ),
                );
                None
            }
            Some(r) => {
                if s.value.is_none() {
                    self.report(
                        &at("min_roi"),
                        "`min_roi` needs the schedule's `value:` (what a completed run is worth)"
                            .into(),
                        Some("e.g. `value: { value_usd: 0.05 }` on the schedule".into()),
                    );
                }
                Some((r * 1000.0).round() as u64)
            }
            None => None,
        };
        if b.min_runs == Some(0) {
            self.report(
                &at("min_runs"),
                "`min_runs` must be at least 1".into(),
                None,
            );
        }
        if b.max_usd.is_none() && b.spike.is_none() && b.min_roi.is_none() {
            self.report(
                &[Seg::Key("schedules"), Seg::Key(name), Seg::Key("breaker")],
                "a breaker needs `max_usd`, `spike` or `min_roi`".into(),
                Some("e.g. `max_usd: 1` to pause when the window's spend passes $1".into()),
            );
        }
        BreakerDef {
            window: b.window,
            max_cost: b.max_usd.map(|u| u.0),
            spike: b.spike,
            cool_down: b.cool_down.unwrap_or(b.window),
            min_roi_permille,
            min_runs: b
                .min_runs
                .unwrap_or(baton_core::defaults::BREAKER_MIN_RUNS)
                .max(1),
        }
    }
}
