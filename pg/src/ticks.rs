//! Standing loops shared by replicas: each tick is claimed by the one replica that runs it.

use std::sync::Arc;

use crate::{PgError, SharedLedger};

/// Claims of a topology's loop ticks: of the replicas that ask for the same tick, one gets it.
/// A claim is a row keyed by (topology, schedule, tick); asking again for a tick this replica
/// already holds answers yes again (a retry after a lost reply), so a tick runs at most once and,
/// while any replica is up, once.
pub struct TickClaimer {
    ledger: Arc<SharedLedger>,
    topology: String,
}

impl TickClaimer {
    /// Claims of topology `topology`'s loop ticks, as `ledger`'s replica.
    pub fn new(ledger: Arc<SharedLedger>, topology: impl Into<String>) -> TickClaimer {
        TickClaimer {
            ledger,
            topology: topology.into(),
        }
    }

    /// Claims the tick of `schedule` due at `tick_ms`: `true` for one replica only.
    ///
    /// # Errors
    /// [`PgError::Db`].
    pub async fn claim(&self, schedule: &str, tick_ms: u64) -> Result<bool, PgError> {
        // (Unix milliseconds fit a bigint for another 292 million years.)
        let tick = i64::try_from(tick_ms).unwrap_or(i64::MAX);
        let (topology, replica) = (&self.topology, self.ledger.replica());
        let row = self
            .ledger
            .conn()
            .run("claiming a loop's tick", |c| async move {
                c.query_opt(
                    "INSERT INTO baton_loop_ticks AS t (topology, schedule, tick_ms, replica)
                     VALUES ($1, $2, $3, $4)
                     ON CONFLICT (topology, schedule, tick_ms) DO UPDATE SET replica = t.replica
                         WHERE t.replica = $4
                     RETURNING true",
                    &[topology, &schedule, &tick, &replica],
                )
                .await
            })
            .await?;
        Ok(row.is_some())
    }

    /// Forgets claims older than a week.
    ///
    /// # Errors
    /// [`PgError::Db`].
    pub async fn prune(&self) -> Result<u64, PgError> {
        self.ledger
            .conn()
            .run("pruning loops' ticks", |c| async move {
                c.execute(
                    "DELETE FROM baton_loop_ticks WHERE claimed_at < now() - interval '7 days'",
                    &[],
                )
                .await
            })
            .await
    }
}

impl TickClaimer {
    /// Records what the run of the tick this replica claimed spent and produced.
    ///
    /// # Errors
    /// [`PgError::Db`].
    pub async fn ran(
        &self,
        schedule: &str,
        tick_ms: u64,
        run: baton_core::SharedRun,
    ) -> Result<(), PgError> {
        let tick = i64::try_from(tick_ms).unwrap_or(i64::MAX);
        let (cost, value) = (
            i64::try_from(run.cost_nanousd).unwrap_or(i64::MAX),
            i64::try_from(run.value_nanousd).unwrap_or(i64::MAX),
        );
        let (topology, replica, completed) = (&self.topology, self.ledger.replica(), run.completed);
        self.ledger
            .conn()
            .run("recording a loop's run", |c| async move {
                c.execute(
                    "UPDATE baton_loop_ticks
                     SET cost_nanousd = $4, value_nanousd = $5, completed = $6,
                         ended_seq = nextval('baton_loop_runs_seq')
                     WHERE topology = $1 AND schedule = $2 AND tick_ms = $3 AND replica = $7
                       AND ended_seq IS NULL",
                    &[
                        topology, &schedule, &tick, &cost, &value, &completed, &replica,
                    ],
                )
                .await
            })
            .await?;
        Ok(())
    }

    /// The runs of `schedule` other replicas recorded after cursor `after` (`None`: none, only
    /// the cursor of now), in the order they ended, and the new cursor.
    ///
    /// # Errors
    /// [`PgError::Db`].
    pub async fn others_ran(
        &self,
        schedule: &str,
        after: Option<u64>,
    ) -> Result<(Vec<baton_core::SharedRun>, u64), PgError> {
        let (topology, replica) = (&self.topology, self.ledger.replica());
        let Some(after) = after else {
            let now: i64 = self
                .ledger
                .conn()
                .run("reading a loop's runs", |c| async move {
                    c.query_one(
                        "SELECT COALESCE(max(ended_seq), 0) FROM baton_loop_ticks
                         WHERE topology = $1 AND schedule = $2",
                        &[topology, &schedule],
                    )
                    .await
                })
                .await?
                .get(0);
            return Ok((Vec::new(), u64::try_from(now).unwrap_or(0)));
        };
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let rows = self
            .ledger
            .conn()
            .run("reading a loop's runs", |c| async move {
                c.query(
                    "SELECT ended_seq, cost_nanousd, value_nanousd, completed FROM baton_loop_ticks
                     WHERE topology = $1 AND schedule = $2 AND ended_seq > $3 AND replica <> $4
                     ORDER BY ended_seq",
                    &[topology, &schedule, &after, &replica],
                )
                .await
            })
            .await?;
        let u = |n: i64| u64::try_from(n).unwrap_or(0);
        let cursor = rows.last().map_or(u(after), |r| u(r.get(0)));
        Ok((
            rows.iter()
                .map(|r| baton_core::SharedRun {
                    cost_nanousd: u(r.get(1)),
                    value_nanousd: u(r.get(2)),
                    completed: r.get(3),
                })
                .collect(),
            cursor,
        ))
    }
}

#[async_trait::async_trait]
impl baton_core::TickClaims for TickClaimer {
    async fn claim(&self, schedule: &str, tick_ms: u64) -> Result<bool, String> {
        TickClaimer::claim(self, schedule, tick_ms)
            .await
            .map_err(|e| e.to_string())
    }

    async fn ran(
        &self,
        schedule: &str,
        tick_ms: u64,
        run: baton_core::SharedRun,
    ) -> Result<(), String> {
        TickClaimer::ran(self, schedule, tick_ms, run)
            .await
            .map_err(|e| e.to_string())
    }

    async fn others_ran(
        &self,
        schedule: &str,
        after: Option<u64>,
    ) -> Result<(Vec<baton_core::SharedRun>, u64), String> {
        TickClaimer::others_ran(self, schedule, after)
            .await
            .map_err(|e| e.to_string())
    }
}
