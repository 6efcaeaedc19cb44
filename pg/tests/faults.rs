//! The database going away for two seconds while reservations run, as a stopped server does:
//! a TCP proxy in front of it resets its connections and closes its port, then listens again.
//! (Stopping the shared test server itself would take every other test down with it.) Reservations made during the outage are refused with an error
//! or served from leases already drawn; none is booked twice, the budget is never overspent, and
//! the replica works again once the database is back. (A real database; real time.)

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use baton_core::NanoUsd;
use baton_pg::testing::database;
use baton_pg::{EscrowBudget, SharedLedger};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A TCP proxy in front of the database that can go away as a stopped server does: its
/// connections reset and its port closed (new connections refused), until it listens again on
/// the same port.
struct Proxy {
    addr: SocketAddr,
    upstream: String,
    accepting: Mutex<Option<JoinHandle<()>>>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let addr = listener.local_addr().expect("an address");
        let proxy = Proxy {
            addr,
            upstream,
            accepting: Mutex::new(None),
            conns: Arc::default(),
        };
        proxy.serve(listener);
        proxy
    }

    fn serve(&self, listener: TcpListener) {
        let (upstream, conns) = (self.upstream.clone(), Arc::clone(&self.conns));
        let accepting = tokio::spawn(async move {
            while let Ok((mut down, _)) = listener.accept().await {
                let upstream = upstream.clone();
                conns.lock().expect("lock").push(tokio::spawn(async move {
                    if let Ok(mut up) = TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                    }
                }));
            }
        });
        *self.accepting.lock().expect("lock") = Some(accepting);
    }

    /// The database goes away: connections reset, the port closed.
    fn stop(&self) {
        if let Some(a) = self.accepting.lock().expect("lock").take() {
            a.abort();
        }
        for c in self.conns.lock().expect("lock").drain(..) {
            c.abort();
        }
    }

    /// It comes back on the same port.
    async fn start_again(&self) {
        let mut tries = 0;
        let listener = loop {
            // (The aborted accept loop drops its listener when the runtime next polls it.)
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) if tries > 500 => panic!("the proxy's port {}: {e}", self.addr),
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
            tries += 1;
        };
        self.serve(listener);
    }
}

/// `url` with its host and port replaced by `addr`.
fn through(url: &str, addr: SocketAddr) -> (String, String) {
    let (scheme_user, rest) = url.split_once('@').expect("a user in the URL");
    let (host, db) = rest.split_once('/').expect("a database in the URL");
    (format!("{scheme_user}@{addr}/{db}"), host.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_refuses_or_waits_never_books_twice_and_recovers() {
    let Some(url) = database("faults").await else {
        return;
    };
    let limit = NanoUsd::from_usd(1);
    let direct = SharedLedger::connect(&url, "checker", Duration::from_secs(3))
        .await
        .expect("connects");
    direct
        .ensure_budget("fleet", Some(limit))
        .await
        .expect("a budget");
    let (proxied, upstream) = through(&url, "127.0.0.1:0".parse().expect("addr"));
    let proxy = Proxy::start(upstream).await;
    let (proxied, _) = through(&proxied, proxy.addr);
    let ledger = Arc::new(
        SharedLedger::connect_with(
            &proxied,
            "replica",
            Duration::from_secs(3),
            Duration::from_millis(500),
        )
        .await
        .expect("connects through the proxy"),
    );
    let budget = Arc::new(EscrowBudget::new(
        Arc::clone(&ledger),
        "fleet",
        NanoUsd(limit.0 / 50),
    ));

    let committed = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let after_outage = Arc::new(AtomicU64::new(0));
    let outage_over = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..8u64)
        .map(|w| {
            let (budget, committed, errors) = (
                Arc::clone(&budget),
                Arc::clone(&committed),
                Arc::clone(&errors),
            );
            let (after_outage, outage_over) = (Arc::clone(&after_outage), Arc::clone(&outage_over));
            tokio::spawn(async move {
                for i in 0..250u64 {
                    // A call's worst case, and what it cost (at most that).
                    let worst = NanoUsd(1_000_000);
                    match budget.reserve(worst).await {
                        Ok(Some(hold)) => {
                            let cost = NanoUsd(1_000_000 - (w * 7 + i) % 1_000);
                            hold.commit(cost).expect("within the reservation");
                            committed.fetch_add(cost.0, Ordering::SeqCst);
                            if outage_over.load(Ordering::SeqCst) {
                                after_outage.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                        Ok(None) => {}
                        Err(_) => {
                            errors.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        })
        .collect();
    let renewing = tokio::spawn({
        let budget = Arc::clone(&budget);
        async move {
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let _ = budget.renew().await;
            }
        }
    });

    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.stop();
    // The port is closed, as a stopped server's: a new connection is refused.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        TcpStream::connect(proxy.addr).await.is_err(),
        "the port is closed"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Nothing the replica did during the outage reached the books twice: the database's figures
    // stay consistent while it is cut off.
    let during = direct.status("fleet").await.expect("a status");
    assert!(during.spent.0 + during.leased.0 <= limit.0);
    proxy.start_again().await;
    outage_over.store(true, Ordering::SeqCst);
    for w in workers {
        w.await.expect("a worker");
    }
    renewing.abort();
    assert!(
        errors.load(Ordering::SeqCst) > 0,
        "the outage was felt: some reservations needed the database"
    );
    assert!(
        after_outage.load(Ordering::SeqCst) > 0,
        "reservations were served again once the database was back"
    );
    budget.settle_idle().await.expect("settles once back");

    // A draw whose reply the outage swallowed left a lease no one renews: once it expires, a
    // reaper returns it (it spent nothing). Then the books are exact.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let status = loop {
        direct.reap().await.expect("reaps");
        let s = direct.status("fleet").await.expect("a status");
        if s.leased == NanoUsd::ZERO || tokio::time::Instant::now() > deadline {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(
        status.leased,
        NanoUsd::ZERO,
        "every lease settled or reaped"
    );
    assert_eq!(
        status.spent.0,
        committed.load(Ordering::SeqCst),
        "the database booked exactly what the calls cost: nothing twice, nothing lost"
    );
    assert!(status.spent <= limit, "never overspent");
}
