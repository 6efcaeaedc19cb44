//! Live account counting, in a process of its own (other tests open accounts concurrently).

use baton_core::{Account, NanoUsd, live_accounts};

/// Accounts opened on several threads are counted, and uncounted when freed on another
/// thread than the one that opened them.
#[test]
fn live_accounts_counts_every_open_account_until_it_is_freed() {
    let before = live_accounts();
    let roots: Vec<Account> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|t| {
                s.spawn(move || {
                    let root = Account::root(t, format!("r{t}"), Some(NanoUsd(10)), None);
                    for i in 0..24 {
                        let _ = root.open_child(100 + i, "c", None, None);
                    }
                    root
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("joined"))
            .collect()
    });
    // Each root keeps its 24 children for its report: 4 × 25 accounts.
    assert_eq!(live_accounts(), before + 100);
    drop(roots);
    assert_eq!(live_accounts(), before, "all freed, on this thread");
}
