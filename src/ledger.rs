//! `baton ledger status`: the shared budgets as the database holds them; and `--ledger URL` on
//! `baton run`: the topology's `budget: max_usd` shared with every other process run with the
//! same ledger.

use std::process::ExitCode;
use std::time::Duration;

use crate::print::usd;

/// Prints every shared budget of the ledger at `url`: a table, or one JSON object per line.
pub(crate) async fn status(url: String, json: bool) -> ExitCode {
    let ledger =
        match baton_pg::SharedLedger::connect(&url, "status", Duration::from_secs(30)).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("error: the shared ledger: {e}");
                return ExitCode::from(2);
            }
        };
    let budgets = match ledger.statuses().await {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: the shared ledger: {e}");
            return ExitCode::from(2);
        }
    };
    if json {
        for b in &budgets {
            let line = serde_json::json!({
                "budget": b.name,
                "limit_nanousd": b.limit.map(|l| l.0),
                "spent_nanousd": b.spent.0,
                "leased_nanousd": b.leased.0,
                "live_leases": b.live_leases,
                "expired_leases": b.expired_leases,
            });
            println!("{line}");
        }
        return ExitCode::SUCCESS;
    }
    if budgets.is_empty() {
        println!("no shared budgets yet");
        return ExitCode::SUCCESS;
    }
    println!(
        "{:<24} {:>12} {:>12} {:>12} {:>7}",
        "budget", "limit", "spent", "leased", "leases"
    );
    for b in &budgets {
        let expired = if b.expired_leases > 0 {
            format!(" ({} expired)", b.expired_leases)
        } else {
            String::new()
        };
        println!(
            "{:<24} {:>12} {:>12} {:>12} {:>7}{expired}",
            b.name,
            b.limit.map_or_else(|| "none".to_string(), usd),
            usd(b.spent),
            usd(b.leased),
            b.live_leases
        );
    }
    ExitCode::SUCCESS
}

/// The shared ledger's URL: `--ledger` if given, else the topology's `ledger: { postgres: … }`
/// with its `${VAR}` references read from the environment.
///
/// # Errors
/// A reference to a variable that is not set.
pub(crate) fn url(
    flag: Option<&str>,
    topology: &baton::topologies::Topology,
) -> anyhow::Result<Option<String>> {
    if let Some(url) = flag {
        return Ok(Some(url.to_string()));
    }
    let Some(written) = topology.ledger() else {
        return Ok(None);
    };
    let mut out = String::new();
    let mut rest = written;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('}') else {
            anyhow::bail!("`ledger: postgres:` has an unclosed `${{` in `{written}`");
        };
        let var = &rest[start + 2..start + end];
        match std::env::var(var) {
            Ok(v) => out.push_str(&v),
            Err(_) => anyhow::bail!(
                "`ledger: postgres:` reads the environment variable `{var}`, which is not set"
            ),
        }
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    Ok(Some(out))
}

/// This process's side of the topology's shared ledger (`--ledger`, `ledger:`): its budget and
/// its loops' ticks.
pub(crate) struct Shared {
    /// How long a lease (of budget or of a task) lives unless renewed.
    pub(crate) lease: Duration,
    ledger: std::sync::Arc<baton_pg::SharedLedger>,
    budget: std::sync::Arc<baton_pg::FleetBudget>,
    /// Standing loops' own per-period budgets, by schedule.
    loops: Vec<(String, std::sync::Arc<baton_pg::FleetBudget>)>,
    claims: std::sync::Arc<baton_pg::TickClaimer>,
    renewing: tokio::task::JoinHandle<()>,
}

impl Shared {
    /// Joins the shared ledger at `url` for `topology`: its budget (named after the topology,
    /// limited by its `budget:` — `max_usd`, `max_usd_per_day`, `max_usd_per_hour` — and each
    /// loop's `per_day_usd` / `per_hour_usd`) is created or its limits updated, leases that dead
    /// replicas left are reaped, and this process's leases are renewed until [`Shared::finish`].
    /// (A topology without limits still shares its task queue and its loops' ticks.)
    ///
    /// # Errors
    /// `--ledger-lease` under a second, or the database cannot be reached or refuses a limit.
    pub(crate) async fn join(
        url: &str,
        topology: &baton::topologies::Topology,
        lease: Duration,
    ) -> anyhow::Result<Shared> {
        use anyhow::Context;
        if lease < Duration::from_secs(1) {
            anyhow::bail!(
                "--ledger-lease must be at least 1s: leases are renewed every third of it"
            );
        }
        let b = topology.budget();
        let replica = format!("{}-{}", crate::push::host_name(), std::process::id());
        let ledger = baton_pg::SharedLedger::connect(url, replica, lease)
            .await
            .context("the shared ledger")?;
        let reaped = ledger.reap().await.context("the shared ledger")?;
        if reaped > 0 {
            eprintln!("shared ledger: booked {reaped} lease(s) that stopped replicas left");
        }
        let ledger = std::sync::Arc::new(ledger);
        let limits = baton_pg::FleetLimits {
            max: b.max,
            per_day: b.per_day,
            per_hour: b.per_hour,
        };
        let budget = std::sync::Arc::new(
            baton_pg::FleetBudget::join(std::sync::Arc::clone(&ledger), topology.name(), limits)
                .await
                .context("the shared ledger")?,
        );
        // Each standing loop's own per-period limits, shared too (`NAME/loop/SCHEDULE/day/…`).
        let mut loops = Vec::new();
        for def in topology.schedules() {
            if def.per_day.is_none() && def.per_hour.is_none() {
                continue;
            }
            let limits = baton_pg::FleetLimits {
                max: None,
                per_day: def.per_day,
                per_hour: def.per_hour,
            };
            let name = format!("{}/loop/{}", topology.name(), def.name);
            let budget = baton_pg::FleetBudget::join(std::sync::Arc::clone(&ledger), &name, limits)
                .await
                .context("the shared ledger")?;
            loops.push((def.name.to_string(), std::sync::Arc::new(budget)));
        }
        let claims = std::sync::Arc::new(baton_pg::TickClaimer::new(
            std::sync::Arc::clone(&ledger),
            topology.name(),
        ));
        let renewing = tokio::spawn({
            let (budget, claims) = (
                std::sync::Arc::clone(&budget),
                std::sync::Arc::clone(&claims),
            );
            let ledger = std::sync::Arc::clone(&ledger);
            let loops: Vec<_> = loops
                .iter()
                .map(|(_, b)| std::sync::Arc::clone(b))
                .collect();
            async move {
                loop {
                    tokio::time::sleep(lease / 3).await;
                    for b in std::iter::once(&budget).chain(&loops) {
                        if let Err(e) = b.renew().await {
                            tracing::error!("shared ledger: renewing leases: {e}");
                        }
                    }
                    // Dead replicas' leases go back to the budget (booked as documented).
                    if let Err(e) = ledger.reap().await {
                        tracing::error!("shared ledger: reaping expired leases: {e}");
                    }
                    if let Err(e) = claims.prune().await {
                        tracing::error!("shared ledger: pruning loops' ticks: {e}");
                    }
                }
            }
        });
        Ok(Shared {
            lease,
            ledger,
            budget,
            loops,
            claims,
            renewing,
        })
    }

    /// The topology's shared task queue (`baton serve`).
    pub(crate) fn queue(&self, topology: &str) -> baton_pg::TaskQueue {
        baton_pg::TaskQueue::new(std::sync::Arc::clone(&self.ledger), topology)
    }

    /// `builder` with this ledger's budget and loop tick claims.
    pub(crate) fn attach(
        &self,
        builder: baton::actors::RuntimeBuilder,
    ) -> baton::actors::RuntimeBuilder {
        let mut builder = builder
            .shared_budget(std::sync::Arc::clone(&self.budget)
                as std::sync::Arc<dyn baton::core::SharedBudget>)
            .tick_claims(
                std::sync::Arc::clone(&self.claims) as std::sync::Arc<dyn baton::core::TickClaims>
            );
        for (schedule, budget) in &self.loops {
            builder = builder.loop_budget(
                schedule.clone(),
                std::sync::Arc::clone(budget) as std::sync::Arc<dyn baton::core::SharedBudget>,
            );
        }
        builder
    }

    /// Settles this process's leases (what they spent is booked, the rest returns to the
    /// budget) and stops renewing them.
    pub(crate) async fn finish(self) {
        self.renewing.abort();
        for budget in std::iter::once(&self.budget).chain(self.loops.iter().map(|(_, b)| b)) {
            if let Err(e) = budget.settle_idle().await {
                eprintln!(
                    "error: the shared ledger: settling this process's leases: {e} (they will be booked when they expire)"
                );
            }
        }
    }
}
