//! The shared ledger against a real PostgreSQL (`BATON_TEST_POSTGRES_URL`, a role that may create
//! databases; `.ci/run` starts a throwaway cluster). Each test works in a database of its own.
//! Without the variable the tests say why and pass, unless `BATON_REQUIRE_POSTGRES=1`.

use std::sync::Arc;
use std::time::Duration;

use baton_core::NanoUsd;
use baton_pg::{EscrowBudget, PgError, SharedLedger};

use baton_pg::testing::database;

async fn ledger(url: &str, replica: &str) -> Arc<SharedLedger> {
    Arc::new(
        SharedLedger::connect(url, replica, Duration::from_secs(30))
            .await
            .expect("connects"),
    )
}

/// Reads the database's own books: each budget's spent and leased beside the sums over its leases.
async fn books(url: &str) -> Vec<(String, i64, i64, i64, i64)> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connects");
    tokio::spawn(conn);
    client
        .query(
            "SELECT b.name, b.spent_nanousd, b.leased_nanousd,
                    COALESCE(sum(l.used_nanousd) FILTER (WHERE l.settled_at IS NOT NULL), 0)::bigint,
                    COALESCE(sum(l.amount_nanousd) FILTER (WHERE l.settled_at IS NULL), 0)::bigint
             FROM baton_budgets b LEFT JOIN baton_leases l ON l.budget = b.name
             GROUP BY b.name ORDER BY b.name",
            &[],
        )
        .await
        .expect("books")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect()
}

/// Each budget's spent is the sum of its settled leases' spend, its leased the sum of its live
/// leases.
async fn assert_books_agree(url: &str) {
    for (name, spent, leased, used, live) in books(url).await {
        assert_eq!((spent, leased), (used, live), "{name}: the books agree");
    }
}

#[tokio::test]
async fn migrations_apply_once_and_a_newer_schema_is_refused() {
    let Some(url) = database("migrations").await else {
        return;
    };
    let a = ledger(&url, "a").await;
    // A second replica starting against the same database finds it migrated.
    let _b = ledger(&url, "b").await;
    a.ensure_budget("total", Some(NanoUsd::from_usd(1)))
        .await
        .expect("budget");
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("connects");
    tokio::spawn(conn);
    let version: i32 = client
        .query_one("SELECT version FROM baton_schema", &[])
        .await
        .expect("version")
        .get(0);
    assert_eq!(version, baton_pg::migrations::latest());
    client
        .batch_execute("UPDATE baton_schema SET version = version + 1")
        .await
        .expect("bump");
    let err = SharedLedger::connect(&url, "c", Duration::from_secs(30))
        .await
        .err()
        .expect("a newer schema is refused");
    assert!(
        matches!(err, PgError::NewerSchema { found, supported } if found == supported + 1),
        "{err}"
    );
    assert!(err.to_string().contains("upgrade Baton"), "{err}");
}

#[tokio::test]
async fn draws_stop_at_the_limit_and_a_settle_books_once() {
    let Some(url) = database("draws").await else {
        return;
    };
    let l = ledger(&url, "r1").await;
    let limit = NanoUsd(1_000);
    l.ensure_budget("total", Some(limit)).await.expect("budget");
    // A slice is at most a quarter of what is left, at least what is needed.
    let a = l
        .draw("total", NanoUsd(10), NanoUsd(600))
        .await
        .expect("draw")
        .expect("granted");
    assert_eq!(a.amount, NanoUsd(250), "a quarter of 1,000");
    let b = l
        .draw("total", NanoUsd(700), NanoUsd(700))
        .await
        .expect("draw")
        .expect("granted");
    assert_eq!(
        b.amount,
        NanoUsd(700),
        "what is needed, when more than a quarter"
    );
    assert_eq!(
        l.draw("total", NanoUsd(51), NanoUsd(51))
            .await
            .expect("draw"),
        None,
        "50 left: a need of 51 is refused"
    );
    // Settling books what was used and returns the rest; settling again books nothing.
    assert!(l.settle(&a, NanoUsd(100)).await.expect("settle"));
    assert!(
        !l.settle(&a, NanoUsd(100)).await.expect("again"),
        "idempotent"
    );
    let s = l.status("total").await.expect("status");
    assert_eq!(
        (s.spent, s.leased, s.live_leases),
        (NanoUsd(100), NanoUsd(700), 1)
    );
    // Over-settling is refused before it reaches the database.
    assert!(matches!(
        l.settle(&b, NanoUsd(701)).await,
        Err(PgError::Overdrawn { .. })
    ));
    // A limit below what is spent and leased is refused, naming both.
    let err = l
        .ensure_budget("total", Some(NanoUsd(500)))
        .await
        .expect_err("below the spend");
    assert!(err.to_string().contains("800"), "{err}");
    assert!(l.settle(&b, NanoUsd(700)).await.expect("settle"));
    let s = l.status("total").await.expect("status");
    assert_eq!((s.spent, s.leased), (NanoUsd(800), NanoUsd::ZERO));
    assert_books_agree(&url).await;
}

#[tokio::test]
async fn a_dead_replicas_lease_is_booked_conservatively_and_the_rest_returns() {
    let Some(url) = database("reap").await else {
        return;
    };
    let dying = Arc::new(
        SharedLedger::connect(&url, "dying", Duration::from_millis(300))
            .await
            .expect("connects"),
    );
    dying
        .ensure_budget("total", Some(NanoUsd(10_000)))
        .await
        .expect("budget");
    let lease = dying
        .draw("total", NanoUsd(1_000), NanoUsd(2_000))
        .await
        .expect("draw")
        .expect("granted");
    assert_eq!(
        lease.amount,
        NanoUsd(2_000),
        "what was wanted, under a quarter of 10,000"
    );
    // The draw reported the 1,000 that asked for it in flight. Its last renewal: 300 spent and
    // 400 in flight, which does not lower what it may have spent (1,000): it reported no more
    // than that, so it cannot have spent more. Then it stops renewing.
    assert!(
        dying
            .renew(&lease, NanoUsd(300), NanoUsd(400))
            .await
            .expect("renew")
    );
    let survivor = ledger(&url, "survivor").await;
    assert_eq!(survivor.reap().await.expect("reap"), 0, "not expired yet");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        survivor
            .status("total")
            .await
            .expect("status")
            .expired_leases,
        1
    );
    assert_eq!(survivor.reap().await.expect("reap"), 1);
    let s = survivor.status("total").await.expect("status");
    assert_eq!(
        (s.spent, s.leased, s.live_leases),
        (NanoUsd(1_000), NanoUsd::ZERO, 0),
        "what it may have spent booked, the rest returned"
    );
    // The dead replica's late settle (it was only slow) books nothing twice.
    assert!(!dying.settle(&lease, NanoUsd(300)).await.expect("settle"));
    assert_eq!(
        survivor.status("total").await.expect("status").spent,
        NanoUsd(1_000)
    );
}

/// A replica never spends past what the database knows it may have spent: a reservation beyond
/// the reported ceiling reports a higher one first, so a replica killed at any moment is booked
/// at least what it spent (here: the dying replica's commits, checked against the reaper's
/// booking after it stops renewing).
#[tokio::test]
async fn a_killed_replica_is_never_booked_less_than_it_spent() {
    let Some(url) = database("ceiling").await else {
        return;
    };
    let dying = Arc::new(
        SharedLedger::connect(&url, "dying", Duration::from_millis(300))
            .await
            .expect("connects"),
    );
    dying
        .ensure_budget("total", Some(NanoUsd(1_000_000)))
        .await
        .expect("budget");
    let budget = EscrowBudget::new(Arc::clone(&dying), "total", NanoUsd(20_000));
    // 37 calls of 300 each, committed in full, never renewed by the clock: only the ceiling
    // reports tell the database.
    let mut spent = 0;
    for _ in 0..37 {
        let h = budget
            .reserve(NanoUsd(300))
            .await
            .expect("db")
            .expect("covered");
        h.commit(NanoUsd(300)).expect("commits");
        spent += 300;
    }
    // It dies (never settles); once its lease expires a survivor books it.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let survivor = ledger(&url, "survivor").await;
    assert_eq!(survivor.reap().await.expect("reap"), 1);
    let s = survivor.status("total").await.expect("status");
    assert!(
        s.spent >= NanoUsd(spent),
        "booked {} for a replica that spent {spent}",
        s.spent
    );
    assert!(
        s.spent.0 <= spent + 20_000 / 4 + 300,
        "and not much more: the ceiling runs a quarter of the lease ahead ({})",
        s.spent
    );
    assert_eq!(s.leased, NanoUsd::ZERO);
    assert_books_agree(&url).await;
}

/// One replica's share of the contention test: `tasks` concurrent reservations of 1-5 µ$ each,
/// committing 60-100% of what they reserved; prints `committed <nanos>` for the parent.
async fn replica_work(url: &str, replica: &str, tasks: u64) {
    let ledger = ledger(url, replica).await;
    let budget = Arc::new(EscrowBudget::new(
        Arc::clone(&ledger),
        "total",
        NanoUsd(200_000),
    ));
    let mut handles = Vec::new();
    for i in 0..tasks {
        let budget = Arc::clone(&budget);
        let seed = baton_core::splitmix64(i ^ u64::from(replica.as_bytes()[0]) << 32);
        handles.push(tokio::spawn(async move {
            let cost = NanoUsd(1_000 + seed % 4_001);
            match budget.reserve(cost).await.expect("the database answers") {
                Some(hold) => {
                    tokio::task::yield_now().await;
                    let spent = NanoUsd(cost.0 * (60 + (seed >> 8) % 41) / 100);
                    hold.commit(spent).expect("within the reservation");
                    (1u64, spent.0)
                }
                None => (0, 0),
            }
        }));
    }
    let (mut ran, mut committed) = (0, 0);
    for h in handles {
        let (n, c) = h.await.expect("a task");
        ran += n;
        committed += c;
    }
    budget.settle_idle().await.expect("settles");
    assert_eq!(
        budget.local(),
        (NanoUsd::ZERO, NanoUsd::ZERO),
        "every lease settled"
    );
    println!("committed {committed} ran {ran}");
}

/// Run by the contention test in a child process (`BATON_PG_REPLICA=<url> <name> <tasks>`).
#[tokio::test]
async fn replica_entry() {
    let Ok(args) = std::env::var("BATON_PG_REPLICA") else {
        return;
    };
    let mut parts = args.split(' ');
    let (url, name, tasks) = (
        parts.next().expect("url"),
        parts.next().expect("name"),
        parts.next().and_then(|t| t.parse().ok()).expect("tasks"),
    );
    replica_work(url, name, tasks).await;
}

/// Three replica processes × 1,000 concurrent reservations against one budget that covers about
/// half of them: the total spend never passes the limit, to the nano-dollar; each replica's
/// commits are on the books exactly; the database's own books agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_share_one_budget_without_overspend() {
    let Some(url) = database("three").await else {
        return;
    };
    let l = ledger(&url, "setup").await;
    // 3,000 reservations averaging 3,000 n$ and committing 80% of that: about 7.2 m$ if all ran.
    let limit = NanoUsd(3_600_000);
    l.ensure_budget("total", Some(limit)).await.expect("budget");
    let exe = std::env::current_exe().expect("the test binary");
    let children: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|name| {
            tokio::process::Command::new(&exe)
                .args([
                    "replica_entry",
                    "--exact",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env("BATON_PG_REPLICA", format!("{url} {name} 1000"))
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("a replica process")
        })
        .collect();
    let (mut committed, mut ran) = (0u64, 0u64);
    for child in children {
        let out = child.wait_with_output().await.expect("the replica ends");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "a replica failed: {text}");
        let at = text
            .find("committed ")
            .unwrap_or_else(|| panic!("no figures from a replica: {text}"));
        let line = text[at..].lines().next().unwrap_or_default();
        let mut words = line.split(' ');
        committed += words
            .nth(1)
            .and_then(|n| n.parse::<u64>().ok())
            .expect("committed");
        ran += words
            .nth(1)
            .and_then(|n| n.parse::<u64>().ok())
            .expect("ran");
    }
    let s = l.status("total").await.expect("status");
    eprintln!(
        "{ran} of 3,000 reservations ran; spent {} of {}",
        s.spent, limit
    );
    assert!(s.spent <= limit, "overspent: {} of {}", s.spent, limit);
    assert_eq!(
        s.spent,
        NanoUsd(committed),
        "the books hold what the replicas committed"
    );
    assert_eq!((s.leased, s.live_leases), (NanoUsd::ZERO, 0));
    assert!(
        (900..3_000).contains(&ran),
        "the budget covers about half the reservations: {ran} of 3,000 ran"
    );
    // Slices shrink as the budget runs low: what is left unspent at the end is a few
    // reservations' worth (each is at most 5,001 n$), not a replica's idle lease.
    assert!(
        limit.0 - s.spent.0 < 30_000,
        "the budget was not used up: {} of {} left",
        limit.0 - s.spent.0,
        limit.0
    );
    assert_books_agree(&url).await;
}

/// A topology budget on the shared ledger: an hour's limit refuses once the hour's spend reaches
/// it, naming the hour's budget; the next hour starts afresh; the total caps all hours; and the
/// last hour's leases are settled once its reservations end.
#[tokio::test]
async fn a_fleet_budget_keeps_a_total_and_per_hour_limits() {
    use baton_pg::{FleetBudget, FleetLimits};
    let Some(url) = database("fleet").await else {
        return;
    };
    let l = ledger(&url, "a").await;
    let now = Arc::new(std::sync::atomic::AtomicI64::new(
        jiff::Timestamp::from_second(1_796_000_400)
            .expect("a time")
            .as_second(),
    ));
    let clock = Arc::clone(&now);
    let limits = FleetLimits {
        max: Some(NanoUsd(250)),
        per_day: None,
        per_hour: Some(NanoUsd(100)),
    };
    let fleet = FleetBudget::join(Arc::clone(&l), "ops", limits)
        .await
        .expect("joins")
        .with_clock(move || {
            jiff::Timestamp::from_second(clock.load(std::sync::atomic::Ordering::SeqCst))
                .expect("a time")
        });
    let mut spent = 0;
    // 60 + 40 fill the hour; 1 more is refused by the hour, not the total.
    for cost in [60, 40] {
        let h = fleet
            .reserve(NanoUsd(cost))
            .await
            .expect("db")
            .expect("covered");
        h.commit(NanoUsd(cost)).expect("commits");
        spent += cost;
    }
    let refused = fleet.reserve(NanoUsd(1)).await.expect("db").err();
    let hour = jiff::Timestamp::from_second(1_796_000_400)
        .expect("a time")
        .strftime("%Y-%m-%dT%H")
        .to_string();
    assert_eq!(refused, Some(format!("ops/hour/{hour}")));
    // The next hour: 100 more, then the total (250) refuses at 200 + 60.
    now.fetch_add(3600, std::sync::atomic::Ordering::SeqCst);
    let held = fleet
        .reserve(NanoUsd(100))
        .await
        .expect("db")
        .expect("a new hour");
    held.commit(NanoUsd(100)).expect("commits");
    spent += 100;
    now.fetch_add(3600, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        fleet.reserve(NanoUsd(60)).await.expect("db").err(),
        Some("ops".to_string()),
        "the total refuses what the hour would allow"
    );
    fleet.renew().await.expect("renews");
    fleet.settle_idle().await.expect("settles");
    let total = l.status("ops").await.expect("the total");
    assert_eq!((total.spent, total.leased), (NanoUsd(spent), NanoUsd::ZERO));
    let statuses = l.statuses().await.expect("statuses");
    let hours: Vec<_> = statuses
        .iter()
        .filter(|b| b.name.starts_with("ops/hour/"))
        .map(|b| (b.spent.0, b.leased.0, b.limit))
        .collect();
    assert_eq!(
        hours,
        vec![
            (100, 0, Some(NanoUsd(100))),
            (100, 0, Some(NanoUsd(100))),
            (0, 0, Some(NanoUsd(100)))
        ],
        "each hour its own budget, settled: {statuses:?}"
    );
    assert_books_agree(&url).await;
}
