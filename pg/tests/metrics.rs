//! The shared ledger's metrics, read from an in-memory recorder (a test binary of its own: the
//! recorder is process-wide). Against a real PostgreSQL, as `escrow.rs`.

use std::time::Duration;

use baton_core::NanoUsd;
use baton_pg::SharedLedger;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};

/// A metric as the recorder holds it: name, labels, value.
type Seen = (String, Vec<(String, String)>, DebugValue);

#[tokio::test]
async fn draws_and_reaps_are_counted_by_budget_and_outcome() {
    let Some(url) = baton_pg::testing::database("metrics").await else {
        return;
    };
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().expect("the only recorder");
    let dying = SharedLedger::connect(&url, "dying", Duration::from_millis(100))
        .await
        .expect("connects");
    dying
        .ensure_budget("fleet", Some(NanoUsd(1_000)))
        .await
        .expect("budget");
    dying
        .draw("fleet", NanoUsd(600), NanoUsd(600))
        .await
        .expect("draw")
        .expect("granted");
    assert_eq!(
        dying
            .draw("fleet", NanoUsd(600), NanoUsd(600))
            .await
            .expect("draw"),
        None,
        "400 left"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let survivor = SharedLedger::connect(&url, "survivor", Duration::from_secs(30))
        .await
        .expect("connects");
    assert_eq!(survivor.reap().await.expect("reap"), 1);

    let seen: Vec<Seen> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let key = key.key();
            let labels = key
                .labels()
                .map(|l| (l.key().to_string(), l.value().to_string()))
                .collect();
            (key.name().to_string(), labels, value)
        })
        .collect();
    let counter = |name: &str, labels: &[(&str, &str)]| {
        seen.iter()
            .find(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|(_, _, v)| match v {
                DebugValue::Counter(c) => *c,
                other => panic!("{name} is not a counter: {other:?}"),
            })
            .unwrap_or(0)
    };
    let draws = "baton_shared_lease_draws_total";
    assert_eq!(
        counter(draws, &[("budget", "fleet"), ("outcome", "granted")]),
        1
    );
    assert_eq!(
        counter(draws, &[("budget", "fleet"), ("outcome", "refused")]),
        1
    );
    assert_eq!(
        counter("baton_shared_leases_reaped_total", &[("budget", "fleet")]),
        1
    );
    let timed = seen
        .iter()
        .find(|(n, l, _)| n == "baton_shared_draw_seconds" && l.iter().any(|(_, v)| v == "fleet"))
        .map(|(_, _, v)| match v {
            DebugValue::Histogram(h) => h.len(),
            _ => 0,
        });
    assert_eq!(timed, Some(2), "both draws timed");
    // Every one of them is described with the others (HELP texts, and the dashboard's check).
    for name in [
        draws,
        "baton_shared_draw_seconds",
        "baton_shared_leases_reaped_total",
    ] {
        assert!(
            baton_actors_metrics().contains(&name),
            "{name} is not in baton_actors::METRICS"
        );
    }
}

/// The metric families the runtime describes (its `METRICS` list), read from its source: this
/// crate does not depend on baton-actors.
fn baton_actors_metrics() -> Vec<&'static str> {
    const SOURCE: &str = include_str!("../../actors/src/telemetry.rs");
    SOURCE
        .split('"')
        .filter(|s| s.starts_with("baton_shared_"))
        .collect()
}
