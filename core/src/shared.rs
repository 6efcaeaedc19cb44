//! A budget shared with other processes (replicas), beside the in-process ledger: every model
//! call reserves its worst case on it too, and commits what it cost. `baton-pg` implements it on
//! PostgreSQL.

use crate::NanoUsd;

/// A budget other processes spend too.
#[async_trait::async_trait]
pub trait SharedBudget: Send + Sync {
    /// Its name (in refusals).
    fn name(&self) -> &str;

    /// Reserves `cost`, or says which of its limits cannot cover it.
    ///
    /// # Errors
    /// Why the shared budget could not be asked (its store is unreachable): nothing is reserved.
    async fn reserve(&self, cost: NanoUsd) -> Result<SharedReserved, String>;
}

/// What [`SharedBudget::reserve`] got.
pub enum SharedReserved {
    /// The reservation, to commit or drop.
    Held(Box<dyn SharedHold>),
    /// The shared budget cannot cover it: the limit that refused it (a budget's name, e.g.
    /// `ops/hour/2026-12-06T09`), for the refusal's message.
    Refused(String),
}

/// A reservation on a [`SharedBudget`]: committed with what the call cost, or released when
/// dropped.
pub trait SharedHold: Send {
    /// Commits `spent` (the call's booked cost).
    fn commit(self: Box<Self>, spent: NanoUsd);
}

/// Ticks of standing loops claimed among replicas: of the replicas running the same loop, one
/// runs each tick. `baton-pg` implements it on PostgreSQL.
#[async_trait::async_trait]
pub trait TickClaims: Send + Sync {
    /// Claims the run of loop `schedule` due at `tick_ms` (Unix milliseconds, before jitter):
    /// `Ok(true)` for exactly one of the replicas that ask.
    ///
    /// # Errors
    /// Why the claim could not be asked (its store is unreachable): the tick is not run.
    async fn claim(&self, schedule: &str, tick_ms: u64) -> Result<bool, String>;

    /// Records what the run of `schedule`'s tick `tick_ms` (claimed by this replica) spent and
    /// produced, for the other replicas' spend circuit breakers.
    ///
    /// # Errors
    /// Why it could not be recorded.
    async fn ran(&self, _schedule: &str, _tick_ms: u64, _run: SharedRun) -> Result<(), String> {
        Ok(())
    }

    /// The runs of `schedule` other replicas recorded after `after` (a cursor this returns;
    /// `None`: only the cursor of now, no runs), in the order they ended.
    ///
    /// # Errors
    /// Why they could not be read.
    async fn others_ran(
        &self,
        _schedule: &str,
        _after: Option<u64>,
    ) -> Result<(Vec<SharedRun>, u64), String> {
        Ok((Vec::new(), 0))
    }
}

/// A standing loop's run as the replicas share it (for their breakers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SharedRun {
    /// What it spent, in nano-dollars.
    pub cost_nanousd: u64,
    /// The value it produced, in nano-dollars.
    pub value_nanousd: u64,
    /// Whether it completed.
    pub completed: bool,
}
