//! The ledger under the loom model checker: every interleaving of two tasks racing for the last
//! of a budget, reserving, committing and releasing on a shared parent. Run with
//! `RUSTFLAGS="--cfg baton_loom" cargo test -p baton-core --test loom --release` (CI does).
#![cfg(baton_loom)]

use baton_core::{Account, NanoUsd, TokenUsage};

/// Two children of a $10 (10-nano-dollar) root each want 6: whatever the interleaving, at most
/// one gets it, the root never goes over, and the tree adds up.
#[test]
fn two_children_race_for_the_last_of_the_budget() {
    loom::model(|| {
        let root = Account::root(0, "root", Some(NanoUsd(10)), None);
        let a = root.open_child(1, "a", None, None);
        let b = root.open_child(2, "b", None, None);
        let t = loom::thread::spawn(move || {
            a.reserve(NanoUsd(6), 0)
                .map(|r| r.commit(&TokenUsage::default(), NanoUsd(6)))
                .is_ok()
        });
        let won_b = b
            .reserve(NanoUsd(6), 0)
            .map(|r| r.commit(&TokenUsage::default(), NanoUsd(6)))
            .is_ok();
        let won_a = t.join().expect("joins");
        assert!(!(won_a && won_b), "both got the last 6 of 10");
        assert!(won_a || won_b, "one of them got it");
        assert_eq!(root.spent(), NanoUsd(6));
        root.check_conservation().expect("conserved");
    });
}

/// A reservation released (dropped) while another commits less than it reserved: the freed
/// money is available again, and nothing is left reserved at the end.
#[test]
fn release_and_partial_commit_leave_nothing_reserved() {
    loom::model(|| {
        let root = Account::root(0, "root", Some(NanoUsd(10)), None);
        let a = root.open_child(1, "a", None, None);
        let b = root.open_child(2, "b", None, None);
        let t = loom::thread::spawn(move || {
            if let Ok(r) = a.reserve(NanoUsd(8), 0) {
                r.commit(&TokenUsage::default(), NanoUsd(3));
            }
        });
        if let Ok(r) = b.reserve(NanoUsd(5), 0) {
            drop(r);
        }
        t.join().expect("joins");
        assert!(root.spent() <= NanoUsd(10));
        assert_eq!(root.reserved(), NanoUsd::ZERO, "a reservation leaked");
        root.check_conservation().expect("conserved");
    });
}
