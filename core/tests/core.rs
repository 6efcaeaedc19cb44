//! Integration tests of baton-core.
//!
//! - `ledger`: property tests of the ledger under concurrent reserve / commit / release.

mod ledger {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use baton_core::{Account, AccountSnapshot, NanoUsd, TokenUsage};
    use proptest::prelude::*;

    /// A tree of accounts: `parents[i]` is the parent of account `i + 1` (account 0 is the root).
    #[derive(Debug, Clone)]
    struct Shape {
        parents: Vec<usize>,
        limits: Vec<Option<u64>>,
        token_limits: Vec<Option<u64>>,
    }

    fn shape() -> impl Strategy<Value = Shape> {
        (1usize..12).prop_flat_map(|n| {
            let parents = (1..n).map(|i| 0..i).collect::<Vec<_>>();
            (
                parents,
                proptest::collection::vec(proptest::option::weighted(0.7, 0u64..5_000), n),
                proptest::collection::vec(proptest::option::weighted(0.3, 0u64..5_000), n),
            )
                .prop_map(|(parents, limits, token_limits)| Shape {
                    parents,
                    limits,
                    token_limits,
                })
        })
    }

    #[derive(Debug, Clone)]
    struct Op {
        account: usize,
        cost: u64,
        tokens: u64,
        /// Commit this share (in percent) of the reservation; `None` drops it.
        commit_pct: Option<u64>,
    }

    fn ops() -> impl Strategy<Value = Vec<Op>> {
        proptest::collection::vec(
            (
                0usize..64,
                // Up to the limits' own range: single calls that take a whole budget, or miss it
                // by a nano-dollar.
                0u64..5_000,
                0u64..400,
                // Up to 150%: a provider billing more than the worst case reserved (an overrun).
                proptest::option::weighted(0.8, 0u64..=150),
            )
                .prop_map(|(account, cost, tokens, commit_pct)| Op {
                    account,
                    cost,
                    tokens,
                    commit_pct,
                }),
            0..200,
        )
    }

    fn build(shape: &Shape) -> Vec<Account> {
        let mut accounts = vec![Account::root(
            0,
            "a0",
            shape.limits[0].map(NanoUsd),
            shape.token_limits[0],
        )];
        for (i, &p) in shape.parents.iter().enumerate() {
            let id = i + 1;
            let child = accounts[p].open_child(
                id as u64,
                format!("a{id}"),
                shape.limits[id].map(NanoUsd),
                shape.token_limits[id],
            );
            accounts.push(child);
        }
        accounts
    }

    /// The overruns booked in `s`'s subtree (what a provider billed beyond the reservations).
    fn overruns(s: &AccountSnapshot) -> u64 {
        s.overrun.0 + s.children.iter().map(overruns).sum::<u64>()
    }

    fn check_limits(s: &AccountSnapshot, shape: &Shape) {
        let i = s.task as usize;
        if let Some(limit) = shape.limits[i] {
            // Reservations never pass the limit; only what providers bill beyond a reservation
            // (booked, since it was billed, and recorded as an overrun) may.
            assert!(
                s.spent.0 <= limit + overruns(s),
                "account {i} spent {} over its limit {limit} (overruns {})",
                s.spent.0,
                overruns(s)
            );
        }
        if let Some(limit) = shape.token_limits[i] {
            assert!(
                s.tokens_spent <= limit,
                "account {i} used {} tokens over {limit}",
                s.tokens_spent
            );
        }
        let own_plus_children = s.own.cost.0 + s.children.iter().map(|c| c.spent.0).sum::<u64>();
        assert_eq!(s.spent.0, own_plus_children, "conservation at account {i}");
        assert_eq!(
            s.reserved,
            NanoUsd::ZERO,
            "account {i} leaked a reservation"
        );
        for c in &s.children {
            check_limits(c, shape);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]

        /// Four threads, released together by a barrier, race random reservations over a random
        /// tree, committing less, all, or more than they reserved: no limit is passed except by
        /// overruns, every account's own spend equals what the threads committed to it (an
        /// oracle kept apart from the ledger), every parent's spend is its own plus its
        /// children's, and nothing stays reserved.
        #[test]
        fn concurrent_ops_never_overspend_and_conserve(shape in shape(), per_thread in proptest::collection::vec(ops(), 4)) {
            let accounts = Arc::new(build(&shape));
            let n = accounts.len();
            let committed: Arc<Vec<AtomicU64>> = Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
            let barrier = std::sync::Barrier::new(per_thread.len());
            std::thread::scope(|s| {
                for ops in &per_thread {
                    let (accounts, committed, barrier) = (Arc::clone(&accounts), Arc::clone(&committed), &barrier);
                    s.spawn(move || {
                        barrier.wait();
                        for op in ops {
                            let i = op.account % n;
                            if let Ok(r) = accounts[i].reserve(NanoUsd(op.cost), op.tokens)
                                && let Some(pct) = op.commit_pct
                            {
                                let cost = NanoUsd(op.cost * pct / 100);
                                // (Token overruns are not tracked apart: tokens commit at most
                                // what was reserved, money up to 150% of it.)
                                let t = op.tokens * pct.min(100) / 100;
                                r.commit(&TokenUsage { input: t / 2, output: t - t / 2, cached_input: 0, cache_write_input: 0 }, cost);
                                committed[i].fetch_add(cost.0, Ordering::Relaxed);
                            }
                        }
                    });
                }
            });
            let snap = accounts[0].snapshot();
            check_limits(&snap, &shape);
            let mut own = vec![0u64; n];
            snap.walk(&mut |a| own[a.task as usize] = a.own.cost.0);
            let oracle: Vec<u64> = committed.iter().map(|c| c.load(Ordering::Relaxed)).collect();
            prop_assert_eq!(&own, &oracle, "each account's own spend is what was committed to it");
            prop_assert_eq!(snap.spent.0, oracle.iter().sum::<u64>(), "the root's spend is every commit");
            prop_assert!(accounts[0].check_conservation().is_ok());
        }
    }

    /// A task delegated by a private task is private (the delegation carries its transcript's
    /// content); one delegated before the parent became private is not; privacy never flows up.
    #[test]
    fn privacy_flows_down_delegations_made_after_it() {
        let root = Account::root(0, "root", None, None);
        let before = root.open_child(1, "a", None, None);
        assert!(!root.is_private());
        root.mark_private();
        let after = root.open_child(2, "b", None, None);
        let grandchild = after.open_child(3, "c", None, None);
        assert!(after.is_private() && grandchild.is_private());
        assert!(
            !before.is_private(),
            "delegated before the sensitive data arrived"
        );
        before.mark_private();
        let other = Account::root(4, "other", None, None);
        assert!(!other.is_private());
        before.record_private_step();
        before.record_private_step();
        let snap = root.snapshot();
        let mut steps = Vec::new();
        snap.walk(&mut |a| steps.push((a.task, a.private_steps)));
        steps.sort();
        assert_eq!(steps, [(0, 0), (1, 2), (2, 0), (3, 0)]);
    }

    /// Sixteen threads race for the last dollar in $0.30 pieces: exactly three win, never four.
    #[test]
    fn racing_for_the_last_dollar() {
        for _ in 0..200 {
            let root = Account::root(0, "root", Some(NanoUsd::from_usd(1)), None);
            let kids: Vec<Account> = (0..4)
                .map(|i| root.open_child(i + 1, "kid", None, None))
                .collect();
            let wins = AtomicU64::new(0);
            std::thread::scope(|s| {
                for t in 0..16 {
                    let acct = &kids[t % 4];
                    let wins = &wins;
                    s.spawn(move || {
                        if let Ok(r) = acct.reserve(NanoUsd(300_000_000), 0) {
                            wins.fetch_add(1, Ordering::Relaxed);
                            r.commit(&TokenUsage::default(), NanoUsd(300_000_000));
                        }
                    });
                }
            });
            assert_eq!(wins.load(Ordering::Relaxed), 3);
            assert_eq!(root.spent(), NanoUsd(900_000_000));
            root.check_conservation().expect("conserved");
        }
    }
}
