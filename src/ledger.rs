//! `baton ledger status`: the shared budgets as the database holds them.

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
