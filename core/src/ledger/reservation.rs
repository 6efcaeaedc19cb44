//! A reservation: the worst case of one model call, held on an account and every ancestor until
//! the call is booked (`commit`: the real cost replaces the hold, in one atomic update per level)
//! or given back (dropped). The hot path of every model call.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::{Account, AtomicU64, BudgetEventKind, Chain};
use crate::money::NanoUsd;
use crate::usage::TokenUsage;

/// Money and tokens held for one model call. Dropping it without [`commit`](Self::commit)
/// releases it (so a call that errors, or a task that crashes, gives the reservation back).
#[must_use = "a reservation is released when dropped; commit it after the call"]
pub struct Reservation {
    pub(super) chain: Arc<Chain>,
    pub(super) cost: u64,
    pub(super) tokens: u64,
    pub(super) live: bool,
}

/// What a commit booked.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Committed {
    /// The cost booked.
    pub cost: NanoUsd,
    /// How much more than reserved was booked (zero when the reservation was a true upper bound).
    pub overrun: NanoUsd,
}

impl Reservation {
    /// The money held.
    pub fn cost(&self) -> NanoUsd {
        NanoUsd(self.cost)
    }

    /// Books the real usage of the call (priced at `cost`) and releases the rest of the reservation,
    /// on the account and every ancestor.
    pub fn commit(mut self, usage: &TokenUsage, cost: NanoUsd) -> Committed {
        self.live = false;
        let tokens = usage.total();
        let mut cur: Option<&Chain> = Some(&self.chain);
        while let Some(c) = cur {
            let n = &*c.node;
            swap_reserved(&n.cost_used, self.cost, cost.0);
            swap_reserved(&n.tokens_used, self.tokens, tokens);
            n.cost_spent.fetch_add(cost.0, Ordering::AcqRel);
            n.tokens_spent.fetch_add(tokens, Ordering::AcqRel);
            cur = c.parent.as_deref();
        }
        let n = &self.chain.node;
        n.cost_own.fetch_add(cost.0, Ordering::AcqRel);
        n.input_own.fetch_add(usage.input, Ordering::Relaxed);
        n.output_own.fetch_add(usage.output, Ordering::Relaxed);
        n.cached_own
            .fetch_add(usage.cached_input, Ordering::Relaxed);
        if usage.cache_write_input > 0 {
            n.score
                .cache_write_own
                .fetch_add(usage.cache_write_input, Ordering::Relaxed);
        }
        n.model_calls.fetch_add(1, Ordering::Relaxed);
        let overrun = cost.0.saturating_sub(self.cost);
        if overrun > 0 {
            n.overrun.fetch_add(overrun, Ordering::Relaxed);
            Account(Arc::clone(&self.chain)).record_event(
                BudgetEventKind::Overrun,
                format!(
                    "billed {} over the {} reserved",
                    NanoUsd(overrun),
                    NanoUsd(self.cost)
                ),
            );
        }
        Committed {
            cost,
            overrun: NanoUsd(overrun),
        }
    }
}

fn swap_reserved(cell: &AtomicU64, reserved: u64, actual: u64) {
    // One atomic update so `used` never dips below the truth while a commit is half done.
    let _ = cell.fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
        Some(u.saturating_sub(reserved).saturating_add(actual))
    });
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.live {
            return;
        }
        let mut cur: Option<&Chain> = Some(&self.chain);
        while let Some(c) = cur {
            c.node.cost_used.fetch_sub(self.cost, Ordering::AcqRel);
            c.node.tokens_used.fetch_sub(self.tokens, Ordering::AcqRel);
            cur = c.parent.as_deref();
        }
    }
}
