//! A topology's `budget:` kept on the shared ledger: the total, the UTC day's and the UTC hour's,
//! each a shared budget of its own, so that every replica's tasks and loops draw on the same
//! three limits.

use std::sync::{Arc, Mutex};

use baton_core::NanoUsd;

use crate::{EscrowBudget, Hold, PgError, SharedLedger};

/// The limits of a [`FleetBudget`] (absent: none).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FleetLimits {
    /// In total (`max_usd`).
    pub max: Option<NanoUsd>,
    /// In each UTC calendar day (`max_usd_per_day`).
    pub per_day: Option<NanoUsd>,
    /// In each UTC clock hour (`max_usd_per_hour`).
    pub per_hour: Option<NanoUsd>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Period {
    Day,
    Hour,
}

impl Period {
    fn key(self, at: jiff::Timestamp) -> String {
        at.strftime(match self {
            Period::Day => "%Y-%m-%d",
            Period::Hour => "%Y-%m-%dT%H",
        })
        .to_string()
    }

    fn word(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Hour => "hour",
        }
    }
}

/// One per-period limit: the current period's budget, and past periods' budgets this replica
/// still holds leases of (settled as their reservations end).
struct Periodic {
    period: Period,
    limit: NanoUsd,
    current: tokio::sync::Mutex<Option<(String, Arc<EscrowBudget>)>>,
    retired: Mutex<Vec<Arc<EscrowBudget>>>,
}

/// A topology's budget shared by every replica run with the same ledger: the budget named after
/// the topology (`max_usd`), and one per UTC day (`NAME/day/2026-12-06`, `max_usd_per_day`) and
/// per UTC hour (`NAME/hour/2026-12-06T09`, `max_usd_per_hour`). A reservation is taken from each
/// in turn, and given back to all if one refuses.
pub struct FleetBudget {
    name: String,
    ledger: Arc<SharedLedger>,
    total: Option<Arc<EscrowBudget>>,
    periods: Vec<Periodic>,
    clock: Box<dyn Fn() -> jiff::Timestamp + Send + Sync>,
}

/// The name of task `id`'s shared account (see [`FleetBudget::task`]).
pub fn task_account(topology: &str, id: u64) -> String {
    format!("{topology}/task/{id}")
}

/// What one draw asks for: a fiftieth of the limit (the database gives less as it runs low).
fn slice(limit: NanoUsd) -> NanoUsd {
    NanoUsd((limit.0 / 50).max(1))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl FleetBudget {
    /// Joins the shared budget of topology `name` with `limits`: the total's budget is created
    /// (or its limit set) now, each period's when the period's first reservation comes.
    ///
    /// # Errors
    /// [`PgError::LimitBelowSpend`] when the total's limit is below what is already spent;
    /// [`PgError::Db`].
    pub async fn join(
        ledger: Arc<SharedLedger>,
        name: &str,
        limits: FleetLimits,
    ) -> Result<FleetBudget, PgError> {
        let total = match limits.max {
            None => None,
            Some(limit) => {
                ledger.ensure_budget(name, Some(limit)).await?;
                Some(Arc::new(EscrowBudget::new(
                    Arc::clone(&ledger),
                    name,
                    slice(limit),
                )))
            }
        };
        let periods = [
            (Period::Day, limits.per_day),
            (Period::Hour, limits.per_hour),
        ]
        .into_iter()
        .filter_map(|(period, limit)| {
            limit.map(|limit| Periodic {
                period,
                limit,
                current: tokio::sync::Mutex::new(None),
                retired: Mutex::new(Vec::new()),
            })
        })
        .collect();
        Ok(FleetBudget {
            name: name.to_string(),
            ledger,
            total,
            periods,
            clock: Box::new(jiff::Timestamp::now),
        })
    }

    /// The shared account of one task of topology `topology` (`TOPOLOGY/task/ID`), limited to
    /// `limit` over all its runs: a task run again after its replica died (`on_interrupted:
    /// resume`) spends only what its earlier runs left, those runs booked as the ledger books a
    /// dead replica's leases. Created at the task's first run; a later run finds it as it stands
    /// (the limit is the same). Its draws are counted under `TOPOLOGY/task` in the metrics.
    ///
    /// # Errors
    /// [`PgError::Db`].
    pub async fn task(
        ledger: Arc<SharedLedger>,
        topology: &str,
        id: u64,
        limit: NanoUsd,
    ) -> Result<FleetBudget, PgError> {
        let name = task_account(topology, id);
        match ledger.ensure_budget(&name, Some(limit)).await {
            // Its runs never spend past the limit: a refusal means what it holds is the limit.
            Ok(()) | Err(PgError::LimitBelowSpend { .. }) => {}
            Err(e) => return Err(e),
        }
        let total = EscrowBudget::labelled(
            Arc::clone(&ledger),
            name.clone(),
            format!("{topology}/task"),
            // A task's calls are few: a quarter of what is left at a time (the database's cap).
            limit,
        );
        Ok(FleetBudget {
            name,
            ledger,
            total: Some(Arc::new(total)),
            periods: Vec::new(),
            clock: Box::new(jiff::Timestamp::now),
        })
    }

    /// Reads the time from `clock` instead of the system's (for tests of period boundaries).
    #[must_use]
    pub fn with_clock(
        mut self,
        clock: impl Fn() -> jiff::Timestamp + Send + Sync + 'static,
    ) -> Self {
        self.clock = Box::new(clock);
        self
    }

    /// The current period's budget of `p`, created when the period begins; the last period's is
    /// retired (settled as its reservations end).
    async fn current(&self, p: &Periodic) -> Result<Arc<EscrowBudget>, PgError> {
        let key = p.period.key((self.clock)());
        let mut current = p.current.lock().await;
        if let Some((k, e)) = current.as_ref()
            && *k == key
        {
            return Ok(Arc::clone(e));
        }
        let budget = format!("{}/{}/{key}", self.name, p.period.word());
        self.ledger.ensure_budget(&budget, Some(p.limit)).await?;
        let e = Arc::new(EscrowBudget::labelled(
            Arc::clone(&self.ledger),
            budget,
            format!("{}/{}", self.name, p.period.word()),
            slice(p.limit),
        ));
        if let Some((_, old)) = current.replace((key, Arc::clone(&e))) {
            lock(&p.retired).push(old);
        }
        Ok(e)
    }

    /// Reserves `cost` on every limit: `Ok(Err(budget))` names the one that cannot cover it
    /// (what the others reserved is given back).
    ///
    /// # Errors
    /// [`PgError::Db`] when a limit needs the database and cannot reach it: nothing is reserved.
    pub async fn reserve(&self, cost: NanoUsd) -> Result<Result<FleetHold, String>, PgError> {
        let mut holds = Vec::with_capacity(1 + self.periods.len());
        let mut escrows: Vec<Arc<EscrowBudget>> = self.total.iter().cloned().collect();
        for p in &self.periods {
            escrows.push(self.current(p).await?);
        }
        for e in escrows {
            match e.reserve(cost).await? {
                Some(h) => holds.push(h),
                None => return Ok(Err(e.budget().to_string())),
            }
        }
        Ok(Ok(FleetHold(holds)))
    }

    fn escrows(&self) -> Vec<Arc<EscrowBudget>> {
        let mut all: Vec<Arc<EscrowBudget>> = self.total.iter().cloned().collect();
        for p in &self.periods {
            if let Ok(c) = p.current.try_lock()
                && let Some((_, e)) = c.as_ref()
            {
                all.push(Arc::clone(e));
            }
            all.extend(lock(&p.retired).iter().cloned());
        }
        all
    }

    /// Renews this replica's leases (run it well within their time to live), and settles past
    /// periods' leases whose reservations have ended.
    ///
    /// # Errors
    /// [`PgError::Db`].
    pub async fn renew(&self) -> Result<(), PgError> {
        for e in self.escrows() {
            e.renew().await?;
        }
        for p in &self.periods {
            let retired: Vec<Arc<EscrowBudget>> = lock(&p.retired).clone();
            for e in retired {
                e.settle_idle().await?;
            }
            lock(&p.retired).retain(|e| !e.is_empty());
        }
        Ok(())
    }

    /// Settles every lease whose reservations have all ended.
    ///
    /// # Errors
    /// [`PgError::Db`]: the leases not yet settled stay, for a later call.
    pub async fn settle_idle(&self) -> Result<(), PgError> {
        for e in self.escrows() {
            e.settle_idle().await?;
        }
        Ok(())
    }
}

/// A reservation on every limit of a [`FleetBudget`].
pub struct FleetHold(Vec<Hold>);

impl FleetHold {
    /// Commits `spent` on every limit.
    ///
    /// # Errors
    /// [`PgError::Overdrawn`] when `spent` is more than the reservation: nothing is committed.
    pub fn commit(self, spent: NanoUsd) -> Result<(), PgError> {
        if let Some(h) = self.0.first()
            && spent > h.amount()
        {
            return Err(PgError::Overdrawn {
                lease: String::from("(a fleet reservation)"),
                used: spent,
                amount: h.amount(),
            });
        }
        for h in self.0 {
            h.commit(spent)?;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl baton_core::SharedBudget for FleetBudget {
    fn name(&self) -> &str {
        &self.name
    }

    async fn reserve(&self, cost: NanoUsd) -> Result<baton_core::SharedReserved, String> {
        match FleetBudget::reserve(self, cost).await {
            Ok(Ok(h)) => Ok(baton_core::SharedReserved::Held(Box::new(h))),
            Ok(Err(limit)) => Ok(baton_core::SharedReserved::Refused(limit)),
            Err(e) => Err(e.to_string()),
        }
    }
}

impl baton_core::SharedHold for FleetHold {
    fn commit(self: Box<Self>, spent: NanoUsd) {
        for h in self.0 {
            baton_core::SharedHold::commit(Box::new(h), spent);
        }
    }
}
