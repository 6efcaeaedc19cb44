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

#[async_trait::async_trait]
impl baton_core::TickClaims for TickClaimer {
    async fn claim(&self, schedule: &str, tick_ms: u64) -> Result<bool, String> {
        TickClaimer::claim(self, schedule, tick_ms)
            .await
            .map_err(|e| e.to_string())
    }
}
