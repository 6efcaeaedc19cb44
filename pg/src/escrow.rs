//! Budgets, leases drawn from them, and a replica's local side of its leases.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use baton_core::NanoUsd;

use crate::{PgError, SharedLedger, big, nanos};

/// A slice of a shared budget drawn into one replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// Its id (the replica's name and a counter): what settling it is keyed by.
    pub id: String,
    /// The budget it was drawn from.
    pub budget: String,
    /// What it holds.
    pub amount: NanoUsd,
}

/// The name budget `name`'s metrics carry: a period's or a task's budget
/// (`NAME/day/2026-12-06`, `NAME/task/17`) counts under its kind (`NAME/day`, `NAME/task`), so
/// that a label's values stay few.
pub(crate) fn metric_label(name: &str) -> &str {
    for kind in ["/day/", "/hour/", "/task/"] {
        if let Some(at) = name.rfind(kind) {
            return &name[..at + kind.len() - 1];
        }
    }
    name
}

/// A shared budget as the database holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BudgetStatus {
    /// Its name.
    pub name: String,
    /// Its limit, if any.
    pub limit: Option<NanoUsd>,
    /// What settled leases spent.
    pub spent: NanoUsd,
    /// What live leases hold.
    pub leased: NanoUsd,
    /// How many leases are live, and how many of them have outlived their time to live.
    pub live_leases: u64,
    /// Live leases past their time to live (their replica stopped renewing them).
    pub expired_leases: u64,
}

impl SharedLedger {
    /// Creates budget `name` with `limit` (`None`: unlimited), or sets the limit of the one that
    /// exists.
    ///
    /// # Errors
    /// [`PgError::LimitBelowSpend`] when the limit is below what the budget has already spent and
    /// leased; [`PgError::Db`] otherwise.
    pub async fn ensure_budget(&self, name: &str, limit: Option<NanoUsd>) -> Result<(), PgError> {
        let limit = limit.map(|l| big("a limit", l)).transpose()?;
        let row = self
            .conn()
            .run("creating a budget", |c| async move {
                c.query_opt(
                    "INSERT INTO baton_budgets AS b (name, limit_nanousd) VALUES ($1, $2)
                     ON CONFLICT (name) DO UPDATE SET limit_nanousd = $2
                         WHERE $2::bigint IS NULL OR b.spent_nanousd + b.leased_nanousd <= $2
                     RETURNING true",
                    &[&name, &limit],
                )
                .await
            })
            .await?;
        if row.is_some() {
            return Ok(());
        }
        // The conflict's WHERE refused the new limit: say what stands in the way.
        let s = self.status(name).await?;
        Err(PgError::LimitBelowSpend {
            budget: name.to_string(),
            limit: limit.map_or(NanoUsd::MAX, nanos),
            committed: NanoUsd(s.spent.0.saturating_add(s.leased.0)),
        })
    }

    /// Draws a lease from `budget`: at least `need` (else `None`: the budget cannot cover it, or
    /// there is no such budget), at most `want`, and at most a quarter of what is left unless
    /// `need` is more — so that slices shrink as the budget runs low. One call: the budget's row
    /// is locked for it alone.
    ///
    /// # Errors
    /// [`PgError::Db`].
    pub async fn draw(
        &self,
        budget: &str,
        need: NanoUsd,
        want: NanoUsd,
    ) -> Result<Option<Lease>, PgError> {
        self.draw_labelled(budget, budget, need, want).await
    }

    /// [`SharedLedger::draw`], counted in the metrics under `label` (a period's budget under
    /// its limit's name, so that the series do not grow with every hour).
    pub(crate) async fn draw_labelled(
        &self,
        label: &str,
        budget: &str,
        need: NanoUsd,
        want: NanoUsd,
    ) -> Result<Option<Lease>, PgError> {
        let need = big("a reservation", need)?.max(1);
        let want = big("a slice", want)?.max(need);
        let id = format!(
            "{}-{}",
            self.replica,
            self.next.fetch_add(1, Ordering::Relaxed)
        );
        let ttl = self.ttl.as_secs_f64();
        // (A function: a statement's snapshot would not see what a concurrent draw leased
        // once the row's lock is ours; the database's CHECK refused such a draw.)
        let started = std::time::Instant::now();
        let (id_ref, replica) = (&id, &self.replica);
        let row = self
            .conn()
            .run("drawing a lease", |c| async move {
                c.query_one(
                    "SELECT baton_draw($1, $2, $3, $4, $5, $6)",
                    &[&budget, &need, &want, id_ref, replica, &ttl],
                )
                .await
            })
            .await;
        // How long a draw waits (the budget's row is locked for one draw at a time) is the
        // contention between replicas.
        metrics::histogram!("baton_shared_draw_seconds", "budget" => label.to_string())
            .record(started.elapsed().as_secs_f64());
        let outcome = match &row {
            Err(_) => "error",
            Ok(r) if r.get::<_, Option<i64>>(0).is_some() => "granted",
            Ok(_) => "refused",
        };
        metrics::counter!("baton_shared_lease_draws_total", "budget" => label.to_string(), "outcome" => outcome)
            .increment(1);
        let granted: Option<i64> = row?.get(0);
        Ok(granted.map(|g| Lease {
            id,
            budget: budget.to_string(),
            amount: nanos(g),
        }))
    }

    /// Renews `lease` for another time to live, recording what it has spent (`used`) and what
    /// it may yet spend beyond that (`held`: what it holds in flight, or more). A reaper books
    /// `used + held` if this replica dies, so a replica reports a ceiling before its spend can
    /// pass it; a renewal never lowers the ceiling reported before (a late, stale renewal
    /// cannot undo a raise). `false` when the lease is settled (or was reaped).
    ///
    /// # Errors
    /// [`PgError::Db`].
    pub async fn renew(
        &self,
        lease: &Lease,
        used: NanoUsd,
        held: NanoUsd,
    ) -> Result<bool, PgError> {
        let (used, held) = (big("spend", used)?, big("a hold", held)?);
        let n = self
            .conn()
            .run("renewing a lease", |c| async move {
                c.execute(
                    "UPDATE baton_leases
                     SET used_nanousd = $2,
                         held_nanousd = GREATEST($3, used_nanousd + held_nanousd - $2),
                         expires_at = now() + make_interval(secs => $4)
                     WHERE id = $1 AND settled_at IS NULL",
                    &[&lease.id, &used, &held, &self.ttl.as_secs_f64()],
                )
                .await
            })
            .await?;
        Ok(n == 1)
    }

    /// Settles `lease`: books `used` on its budget and returns the rest. Idempotent: `false`
    /// when it was settled already (a retry after a lost reply), and nothing is booked again.
    ///
    /// # Errors
    /// [`PgError::Overdrawn`] when `used` is more than the lease holds; [`PgError::Db`].
    pub async fn settle(&self, lease: &Lease, used: NanoUsd) -> Result<bool, PgError> {
        if used > lease.amount {
            return Err(PgError::Overdrawn {
                lease: lease.id.clone(),
                used,
                amount: lease.amount,
            });
        }
        let used = big("spend", used)?;
        let n = self
            .conn()
            .run("settling a lease", |c| async move {
                c.execute(
                    "WITH l AS (
                         UPDATE baton_leases SET used_nanousd = $2, held_nanousd = 0, settled_at = now()
                         WHERE id = $1 AND settled_at IS NULL
                         RETURNING budget, amount_nanousd
                     )
                     UPDATE baton_budgets b
                     SET spent_nanousd = spent_nanousd + $2, leased_nanousd = leased_nanousd - l.amount_nanousd
                     FROM l WHERE b.name = l.budget",
                    &[&lease.id, &used],
                )
                .await
            })
            .await?;
        Ok(n == 1)
    }

    /// Books every lease past its time to live (its replica stopped renewing it):
    /// conservatively, what it had spent plus what it held in flight at its last renewal (a call
    /// in flight may have been billed); the rest returns to its budget. Any replica may run it.
    /// Returns how many leases it reaped.
    ///
    /// # Errors
    /// [`PgError::Db`].
    pub async fn reap(&self) -> Result<u64, PgError> {
        let rows = self
            .conn()
            .run("reaping expired leases", |c| async move {
                c.query(
                    "WITH l AS (
                         UPDATE baton_leases
                         SET used_nanousd = LEAST(amount_nanousd, used_nanousd + held_nanousd),
                             held_nanousd = 0, settled_at = now(), reaped = true
                         WHERE settled_at IS NULL AND expires_at < now()
                         RETURNING budget, amount_nanousd, used_nanousd
                     ), s AS (
                         SELECT budget, sum(amount_nanousd)::bigint AS amount,
                                sum(used_nanousd)::bigint AS used, count(*) AS n
                         FROM l GROUP BY budget
                     )
                     UPDATE baton_budgets b
                     SET spent_nanousd = spent_nanousd + s.used, leased_nanousd = leased_nanousd - s.amount
                     FROM s WHERE b.name = s.budget
                     RETURNING s.budget, s.n",
                    &[],
                )
                .await
            })
            .await?;
        let mut reaped = 0;
        for r in &rows {
            let n = u64::try_from(r.get::<_, i64>(1)).unwrap_or(0);
            let budget: String = r.get(0);
            metrics::counter!("baton_shared_leases_reaped_total", "budget" => metric_label(&budget).to_string())
                .increment(n);
            reaped += n;
        }
        Ok(reaped)
    }

    /// Budget `name` as the database holds it.
    ///
    /// # Errors
    /// [`PgError::NoBudget`] when there is no such budget; [`PgError::Db`].
    pub async fn status(&self, name: &str) -> Result<BudgetStatus, PgError> {
        self.read_statuses(Some(name))
            .await?
            .pop()
            .ok_or_else(|| PgError::NoBudget {
                budget: name.to_string(),
            })
    }

    /// Every shared budget, by name.
    ///
    /// # Errors
    /// [`PgError::Db`].
    pub async fn statuses(&self) -> Result<Vec<BudgetStatus>, PgError> {
        self.read_statuses(None).await
    }

    /// The budget named `only`, or every budget.
    async fn read_statuses(&self, only: Option<&str>) -> Result<Vec<BudgetStatus>, PgError> {
        let rows = self
            .conn()
            .run("reading the budgets", |c| async move {
                c.query(
                    "SELECT b.name, b.limit_nanousd, b.spent_nanousd, b.leased_nanousd,
                            count(l.id) FILTER (WHERE l.settled_at IS NULL),
                            count(l.id) FILTER (WHERE l.settled_at IS NULL AND l.expires_at < now())
                     FROM baton_budgets b LEFT JOIN baton_leases l ON l.budget = b.name
                     WHERE $1::text IS NULL OR b.name = $1
                     GROUP BY b.name ORDER BY b.name",
                    &[&only],
                )
                .await
            })
            .await?;
        Ok(rows
            .iter()
            .map(|r| BudgetStatus {
                name: r.get(0),
                limit: r.get::<_, Option<i64>>(1).map(nanos),
                spent: nanos(r.get(2)),
                leased: nanos(r.get(3)),
                live_leases: u64::try_from(r.get::<_, i64>(4)).unwrap_or(0),
                expired_leases: u64::try_from(r.get::<_, i64>(5)).unwrap_or(0),
            })
            .collect())
    }
}

/// A replica's side of one shared budget: reservations served from its leases, without a round
/// trip to the database unless its leases cannot cover one.
pub struct EscrowBudget {
    inner: Arc<Inner>,
}

struct Inner {
    ledger: Arc<SharedLedger>,
    budget: String,
    /// The name its metrics carry.
    label: String,
    /// What one draw asks for (the database gives less as the budget runs low).
    slice: NanoUsd,
    leases: Mutex<Vec<Local>>,
    /// Held while drawing: reservations that miss together wait for one draw, not one each.
    drawing: tokio::sync::Mutex<()>,
}

/// A lease as this replica uses it.
struct Local {
    lease: Lease,
    /// Committed from it.
    used: NanoUsd,
    /// Reserved from it and not yet committed or released.
    held: NanoUsd,
    /// The most the database knows it may have spent (`used + held` as last reported): what a
    /// reaper would book. Reservations stay under it; one that would pass it reports a higher
    /// one first.
    ceiling: NanoUsd,
}

impl Local {
    fn free(&self) -> NanoUsd {
        NanoUsd(self.lease.amount.0 - self.used.0 - self.held.0)
    }

    /// Whether `cost` can be reserved without reporting a higher ceiling first.
    fn covers(&self, cost: NanoUsd) -> bool {
        self.free() >= cost && self.used.0 + self.held.0 + cost.0 <= self.ceiling.0
    }
}

fn lock(m: &Mutex<Vec<Local>>) -> std::sync::MutexGuard<'_, Vec<Local>> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A reservation on a shared budget: committed with what was spent, or released (as it is when
/// dropped).
pub struct Hold {
    inner: Arc<Inner>,
    lease: String,
    amount: NanoUsd,
    done: bool,
}

impl EscrowBudget {
    /// This replica's side of `budget`, drawing `slice` at a time.
    pub fn new(ledger: Arc<SharedLedger>, budget: impl Into<String>, slice: NanoUsd) -> Self {
        let budget = budget.into();
        Self::labelled(ledger, budget.clone(), budget, slice)
    }

    /// [`EscrowBudget::new`], its draws counted under `label` in the metrics.
    pub(crate) fn labelled(
        ledger: Arc<SharedLedger>,
        budget: String,
        label: String,
        slice: NanoUsd,
    ) -> Self {
        EscrowBudget {
            inner: Arc::new(Inner {
                ledger,
                budget,
                label,
                slice,
                leases: Mutex::new(Vec::new()),
                drawing: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// Reserves `cost`: from a lease this replica holds, else from a new one (idle leases are
    /// settled first, so that their rest goes back to the budget). `None` when the shared
    /// budget cannot cover it.
    ///
    /// # Errors
    /// [`PgError::Db`] when the database is needed and cannot be reached: nothing is reserved.
    pub async fn reserve(&self, cost: NanoUsd) -> Result<Option<Hold>, PgError> {
        if let Some(hold) = self.reserve_locally(cost) {
            return Ok(Some(hold));
        }
        let _drawing = self.inner.drawing.lock().await;
        // Another reservation may have drawn while this one waited.
        if let Some(hold) = self.reserve_locally(cost) {
            return Ok(Some(hold));
        }
        if let Some(hold) = self.reserve_raising(cost).await? {
            return Ok(Some(hold));
        }
        let idle: Vec<(Lease, NanoUsd)> = {
            let mut leases = lock(&self.inner.leases);
            let (idle, busy): (Vec<Local>, Vec<Local>) =
                leases.drain(..).partition(|l| l.held == NanoUsd::ZERO);
            *leases = busy;
            idle.into_iter().map(|l| (l.lease, l.used)).collect()
        };
        let mut idle = idle.into_iter();
        while let Some((lease, used)) = idle.next() {
            if let Err(e) = self.inner.ledger.settle(&lease, used).await {
                // Kept, to be settled later (settling twice books once).
                let mut leases = lock(&self.inner.leases);
                for (lease, used) in std::iter::once((lease, used)).chain(idle) {
                    leases.push(Local {
                        lease,
                        used,
                        held: NanoUsd::ZERO,
                        ceiling: used,
                    });
                }
                return Err(e);
            }
        }
        let Some(lease) = self
            .inner
            .ledger
            .draw_labelled(
                &self.inner.label,
                &self.inner.budget,
                cost,
                self.inner.slice,
            )
            .await?
        else {
            return Ok(None);
        };
        let id = lease.id.clone();
        // (The draw reported the reservation that asked for it as in flight.)
        lock(&self.inner.leases).push(Local {
            lease,
            used: NanoUsd::ZERO,
            held: cost,
            ceiling: cost,
        });
        Ok(Some(self.hold(id, cost)))
    }

    /// Reserves `cost` from a lease with room for it above its reported ceiling: the higher
    /// ceiling (the reservation and a quarter of the lease more, so that the next few need no
    /// round trip) is reported first. `None` when no lease has room, or the one that had was
    /// reaped meanwhile (this replica was cut off past its time to live).
    async fn reserve_raising(&self, cost: NanoUsd) -> Result<Option<Hold>, PgError> {
        let (lease, used, ceiling) = {
            let mut leases = lock(&self.inner.leases);
            let Some(l) = leases.iter_mut().find(|l| l.free() >= cost) else {
                return Ok(None);
            };
            l.held = NanoUsd(l.held.0 + cost.0);
            let ceiling = (l.used.0 + l.held.0 + l.lease.amount.0 / 4).min(l.lease.amount.0);
            (l.lease.clone(), l.used, NanoUsd(ceiling))
        };
        let reported = self
            .inner
            .ledger
            .renew(&lease, used, NanoUsd(ceiling.0 - used.0))
            .await;
        let mut leases = lock(&self.inner.leases);
        let at = leases.iter().position(|l| l.lease.id == lease.id);
        match (reported, at) {
            (Ok(true), Some(i)) => {
                leases[i].ceiling = leases[i].ceiling.max(ceiling);
                drop(leases);
                Ok(Some(self.hold(lease.id, cost)))
            }
            (Ok(false), Some(i)) => {
                // Reaped: what it spent was booked by the reaper; it serves no more.
                leases.remove(i);
                Ok(None)
            }
            (Err(e), Some(i)) => {
                leases[i].held = NanoUsd(leases[i].held.0 - cost.0);
                Err(e)
            }
            (_, None) => Ok(None),
        }
    }

    fn reserve_locally(&self, cost: NanoUsd) -> Option<Hold> {
        let mut leases = lock(&self.inner.leases);
        let l = leases.iter_mut().find(|l| l.covers(cost))?;
        l.held = NanoUsd(l.held.0 + cost.0);
        let id = l.lease.id.clone();
        drop(leases);
        Some(self.hold(id, cost))
    }

    fn hold(&self, lease: String, amount: NanoUsd) -> Hold {
        Hold {
            inner: Arc::clone(&self.inner),
            lease,
            amount,
            done: false,
        }
    }

    /// The budget's name.
    pub fn budget(&self) -> &str {
        &self.inner.budget
    }

    /// Whether this replica holds no lease of it.
    pub fn is_empty(&self) -> bool {
        lock(&self.inner.leases).is_empty()
    }

    /// What this replica's leases have committed, and hold in flight.
    pub fn local(&self) -> (NanoUsd, NanoUsd) {
        let leases = lock(&self.inner.leases);
        leases
            .iter()
            .fold((NanoUsd::ZERO, NanoUsd::ZERO), |(u, h), l| {
                (NanoUsd(u.0 + l.used.0), NanoUsd(h.0 + l.held.0))
            })
    }

    /// Renews every lease, recording what each has spent and holds (run it well within the time
    /// to live).
    ///
    /// # Errors
    /// [`PgError::Db`].
    pub async fn renew(&self) -> Result<(), PgError> {
        let leases: Vec<(Lease, NanoUsd, NanoUsd)> = lock(&self.inner.leases)
            .iter()
            .map(|l| {
                (
                    l.lease.clone(),
                    l.used,
                    NanoUsd(l.ceiling.0.max(l.used.0 + l.held.0) - l.used.0),
                )
            })
            .collect();
        for (lease, used, held) in leases {
            self.inner.ledger.renew(&lease, used, held).await?;
        }
        Ok(())
    }

    /// Settles every lease whose reservations have all ended, returning its rest to the budget.
    ///
    /// # Errors
    /// [`PgError::Db`]: the leases not yet settled stay, and a later call settles them.
    pub async fn settle_idle(&self) -> Result<(), PgError> {
        loop {
            let next = {
                let leases = lock(&self.inner.leases);
                leases
                    .iter()
                    .find(|l| l.held == NanoUsd::ZERO)
                    .map(|l| (l.lease.clone(), l.used))
            };
            let Some((lease, used)) = next else {
                return Ok(());
            };
            self.inner.ledger.settle(&lease, used).await?;
            lock(&self.inner.leases).retain(|l| l.lease.id != lease.id);
        }
    }
}

impl Hold {
    /// What it reserved.
    pub fn amount(&self) -> NanoUsd {
        self.amount
    }

    /// Commits `spent` (at most what was reserved: a reservation is a call's worst case).
    ///
    /// # Errors
    /// [`PgError::Overdrawn`] when `spent` is more than the reservation: nothing is committed and
    /// the reservation is released.
    pub fn commit(mut self, spent: NanoUsd) -> Result<(), PgError> {
        let amount = self.amount;
        self.end(|l| {
            if spent <= amount {
                l.used = NanoUsd(l.used.0 + spent.0);
            }
        });
        if spent > amount {
            return Err(PgError::Overdrawn {
                lease: self.lease.clone(),
                used: spent,
                amount,
            });
        }
        Ok(())
    }

    /// Ends the hold: its amount is no longer held on its lease, and `then` books on the lease
    /// what the caller decides (nothing, for a release).
    fn end(&mut self, then: impl FnOnce(&mut Local)) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let mut leases = lock(&self.inner.leases);
        if let Some(l) = leases.iter_mut().find(|l| l.lease.id == self.lease) {
            l.held = NanoUsd(l.held.0 - self.amount.0);
            then(l);
        }
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.end(|_| {});
    }
}

#[async_trait::async_trait]
impl baton_core::SharedBudget for EscrowBudget {
    fn name(&self) -> &str {
        &self.inner.budget
    }

    async fn reserve(&self, cost: NanoUsd) -> Result<baton_core::SharedReserved, String> {
        match EscrowBudget::reserve(self, cost).await {
            Ok(Some(h)) => Ok(baton_core::SharedReserved::Held(Box::new(h))),
            Ok(None) => Ok(baton_core::SharedReserved::Refused(
                self.inner.budget.clone(),
            )),
            Err(e) => Err(e.to_string()),
        }
    }
}

impl baton_core::SharedHold for Hold {
    /// Commits what the call cost. A call billed over its reservation (its worst case) takes the
    /// difference from its lease's free part where it can; what no lease can hold is logged, as
    /// it cannot be booked centrally.
    fn commit(mut self: Box<Self>, spent: NanoUsd) {
        let lease = self.lease.clone();
        self.end(|l| {
            let booked = spent.min(l.free());
            l.used = NanoUsd(l.used.0 + booked.0);
            if booked < spent {
                tracing::error!(
                    lease = %lease,
                    "a call cost {spent}, over its reservation and its lease: {} not booked on the shared budget",
                    NanoUsd(spent.0 - booked.0)
                );
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::metric_label;

    #[test]
    fn periods_and_tasks_count_under_their_kind() {
        assert_eq!(metric_label("ops"), "ops");
        assert_eq!(metric_label("ops/day/2026-12-06"), "ops/day");
        assert_eq!(
            metric_label("ops/loop/nightly/hour/2026-12-06T09"),
            "ops/loop/nightly/hour"
        );
        assert_eq!(metric_label("ops/task/17"), "ops/task");
    }
}
