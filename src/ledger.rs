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

/// How long a lease lives unless renewed; leases are renewed every third of it.
const LEASE_TTL: Duration = Duration::from_secs(30);

/// This process's side of the topology's shared budget (`--ledger`).
pub(crate) struct Shared {
    budget: std::sync::Arc<baton_pg::EscrowBudget>,
    renewing: tokio::task::JoinHandle<()>,
}

impl Shared {
    /// Joins the shared ledger at `url` for `topology`: its budget (named after the topology,
    /// limited by its `budget: max_usd`) is created or its limit updated, leases that dead
    /// replicas left are reaped, and this process's leases are renewed until [`Shared::finish`].
    ///
    /// # Errors
    /// The topology has no `budget: max_usd` (there would be nothing to share), or the database
    /// cannot be reached or refuses the limit.
    pub(crate) async fn join(
        url: &str,
        topology: &baton::topologies::Topology,
    ) -> anyhow::Result<Shared> {
        use anyhow::Context;
        let Some(limit) = topology.budget().max else {
            anyhow::bail!(
                "`--ledger` shares the topology's `budget: max_usd` with the other processes run with it, and `{}` declares none",
                topology.name()
            );
        };
        let replica = format!("{}-{}", crate::push::host_name(), std::process::id());
        let ledger = baton_pg::SharedLedger::connect(url, replica, LEASE_TTL)
            .await
            .context("the shared ledger")?;
        ledger
            .ensure_budget(topology.name(), Some(limit))
            .await
            .context("the shared ledger")?;
        let reaped = ledger.reap().await.context("the shared ledger")?;
        if reaped > 0 {
            eprintln!("shared ledger: booked {reaped} lease(s) that stopped replicas left");
        }
        let ledger = std::sync::Arc::new(ledger);
        // A draw asks for a fiftieth of the limit; the database gives less as the budget runs low.
        let slice = baton::core::NanoUsd((limit.0 / 50).max(1));
        let budget =
            std::sync::Arc::new(baton_pg::EscrowBudget::new(ledger, topology.name(), slice));
        let renewing = tokio::spawn({
            let budget = std::sync::Arc::clone(&budget);
            async move {
                loop {
                    tokio::time::sleep(LEASE_TTL / 3).await;
                    if let Err(e) = budget.renew().await {
                        tracing::error!("shared ledger: renewing leases: {e}");
                    }
                }
            }
        });
        Ok(Shared { budget, renewing })
    }

    /// The budget, for the runtime.
    pub(crate) fn budget(&self) -> std::sync::Arc<dyn baton::core::SharedBudget> {
        std::sync::Arc::clone(&self.budget) as std::sync::Arc<dyn baton::core::SharedBudget>
    }

    /// Settles this process's leases (what they spent is booked, the rest returns to the
    /// budget) and stops renewing them.
    pub(crate) async fn finish(self) {
        self.renewing.abort();
        if let Err(e) = self.budget.settle_idle().await {
            eprintln!(
                "error: the shared ledger: settling this process's leases: {e} (they will be booked when they expire)"
            );
        }
    }
}
