//! `baton ledger status` against a real PostgreSQL (`BATON_TEST_POSTGRES_URL`; skipped with the
//! reason printed without it, unless `BATON_REQUIRE_POSTGRES=1`).

use super::*;

use baton::core::NanoUsd;

/// The shared budgets of a fresh database, as a replica left them: one lease settled, one live,
/// one expired.
#[test]
fn status_shows_each_budget_its_spend_and_its_leases() {
    let Ok(url) = std::env::var("BATON_TEST_POSTGRES_URL") else {
        assert!(
            std::env::var("BATON_REQUIRE_POSTGRES").as_deref() != Ok("1"),
            "BATON_REQUIRE_POSTGRES=1 but BATON_TEST_POSTGRES_URL is not set"
        );
        eprintln!("SKIPPED: no PostgreSQL (set BATON_TEST_POSTGRES_URL, as .ci/run does)");
        return;
    };
    let rt = tokio::runtime::Runtime::new().expect("a runtime");
    let db = format!("baton_cli_ledger_{}", std::process::id());
    let url = rt.block_on(async {
        let (admin, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .expect("the test server");
        tokio::spawn(conn);
        // (One statement a call: DROP and CREATE DATABASE cannot share a transaction.)
        for sql in [
            format!("DROP DATABASE IF EXISTS {db}"),
            format!("CREATE DATABASE {db}"),
        ] {
            admin.batch_execute(&sql).await.expect("a database");
        }
        let url = format!("{}/{db}", url.rsplit_once('/').expect("a path").0);
        let live = baton_pg::SharedLedger::connect(&url, "r1", std::time::Duration::from_secs(60))
            .await
            .expect("connects");
        live.ensure_budget("topology", Some(NanoUsd::from_usd(2)))
            .await
            .expect("budget");
        let a = live
            .draw("topology", NanoUsd(1_000_000), NanoUsd(100_000_000))
            .await
            .expect("draw")
            .expect("granted");
        live.settle(&a, NanoUsd(250_000)).await.expect("settle");
        live.draw("topology", NanoUsd(1_000_000), NanoUsd(100_000_000))
            .await
            .expect("draw")
            .expect("granted");
        let dying =
            baton_pg::SharedLedger::connect(&url, "r2", std::time::Duration::from_millis(1))
                .await
                .expect("connects");
        dying
            .draw("topology", NanoUsd(1_000_000), NanoUsd(50_000_000))
            .await
            .expect("draw")
            .expect("granted");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        url
    });
    let lines = json_lines(&["ledger", "status", "--ledger", &url, "--json"]);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let b = &lines[0];
    assert_eq!(b["budget"], "topology");
    assert_eq!(u(&b["limit_nanousd"]), 2_000_000_000);
    assert_eq!(u(&b["spent_nanousd"]), 250_000, "the settled lease's spend");
    assert_eq!(
        u(&b["leased_nanousd"]),
        150_000_000,
        "the live lease and the expired one"
    );
    assert_eq!((u(&b["live_leases"]), u(&b["expired_leases"])), (2, 1));
    let out = baton(&["ledger", "status", "--ledger", &url]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("topology") && text.contains("$2.00") && text.contains("(1 expired)"),
        "{text}"
    );
    // An unreachable database is an error naming it, exit 2.
    let out = baton(&[
        "ledger",
        "status",
        "--ledger",
        "postgres://baton@127.0.0.1:1/none",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("PostgreSQL (connecting)"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
