//! A budget shared with other processes (replicas), beside the in-process ledger: every model
//! call reserves its worst case on it too, and commits what it cost. `baton-pg` implements it on
//! PostgreSQL.

use crate::NanoUsd;

/// A budget other processes spend too.
#[async_trait::async_trait]
pub trait SharedBudget: Send + Sync {
    /// Its name (in refusals).
    fn name(&self) -> &str;

    /// Reserves `cost`: `Ok(None)` when the shared budget cannot cover it.
    ///
    /// # Errors
    /// Why the shared budget could not be asked (its store is unreachable): nothing is reserved.
    async fn reserve(&self, cost: NanoUsd) -> Result<Option<Box<dyn SharedHold>>, String>;
}

/// A reservation on a [`SharedBudget`]: committed with what the call cost, or released when
/// dropped.
pub trait SharedHold: Send {
    /// Commits `spent` (the call's booked cost).
    fn commit(self: Box<Self>, spent: NanoUsd);
}
