//! baton-pg: Baton's budgets shared by several processes through PostgreSQL.
//!
//! One process's ledger ([`baton_core::Account`]) makes overspend impossible inside it. Replicas
//! of a runtime that share one budget share it here: a budget is a row (`limit`, `spent`,
//! `leased`) under a `CHECK` that `spent + leased` never passes the limit, so the database itself
//! refuses an overspend, whatever a replica does.
//!
//! **Escrow.** Locking the budget row on every model call would serialise the fleet. Instead a
//! replica *draws* a slice of what is left into a [`Lease`] (one short statement), serves its
//! reservations from it locally ([`EscrowBudget`]), and *settles* it with what it spent, which
//! returns the rest. A slice is at most a quarter of what is left and at least the reservation
//! that asked for it, so slices shrink as the budget runs low and the last dollar is never
//! stranded in an idle replica's lease. Settling is idempotent (keyed by the lease's id): a retry
//! after a lost reply never books twice.
//!
//! **A replica that dies** stops renewing its leases. Once a lease's time to live has passed, any
//! replica's [`SharedLedger::reap`] books it conservatively — what it had spent plus what it held
//! in flight at its last heartbeat (a call may have been billed) — and returns the rest.
//!
//! The schema is versioned ([`migrations`]): migrations apply at connect, and a database whose
//! schema is newer than this build is refused, naming both versions.

mod conn;
mod escrow;
mod fleet;
pub mod migrations;
mod queue;
#[cfg(feature = "testing")]
pub mod testing;
mod ticks;

use std::time::Duration;

pub use escrow::{BudgetStatus, EscrowBudget, Hold, Lease};
pub use fleet::{FleetBudget, FleetHold, FleetLimits, task_account};
pub use queue::{Claimed, Enqueued, Row, TaskQueue};
pub use ticks::TickClaimer;

/// What went wrong with the shared ledger.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PgError {
    /// The database could not be reached or refused a statement.
    #[error("PostgreSQL ({what}): {source}")]
    Db {
        /// What Baton was doing.
        what: &'static str,
        /// The client's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// The database's schema was written by a newer Baton.
    #[error(
        "the database's Baton schema is version {found}, newer than this build's {supported}: upgrade Baton (a migration is never undone)"
    )]
    NewerSchema {
        /// The version the database holds.
        found: i32,
        /// The newest version this build knows.
        supported: i32,
    },
    /// A budget's limit was set below what it has already spent and leased.
    #[error(
        "budget `{budget}`: a limit of {limit} is below what is spent and leased already ({committed})"
    )]
    LimitBelowSpend {
        /// The budget.
        budget: String,
        /// The limit asked for.
        limit: baton_core::NanoUsd,
        /// Its spent plus leased.
        committed: baton_core::NanoUsd,
    },
    /// There is no shared budget by that name.
    #[error("there is no shared budget `{budget}`")]
    NoBudget {
        /// The name asked for.
        budget: String,
    },
    /// A lease was settled with more than was drawn into it.
    #[error("lease `{lease}`: {used} spent is more than the {amount} it drew")]
    Overdrawn {
        /// The lease.
        lease: String,
        /// What was to be booked.
        used: baton_core::NanoUsd,
        /// What the lease holds.
        amount: baton_core::NanoUsd,
    },
    /// The ledger's URL could not be read.
    #[error("the ledger's URL: {source}")]
    Url {
        /// The client's parse error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// `sslmode` is none of libpq's.
    #[error("sslmode `{0}`: expected disable, allow, prefer, require, verify-ca or verify-full")]
    SslMode(String),
    /// `sslrootcert` names a file that is not a PEM certificate bundle.
    #[error("sslrootcert `{path}`: {why}")]
    RootCert {
        /// The file.
        path: String,
        /// What is wrong with it.
        why: String,
    },
    /// A figure does not fit PostgreSQL's `bigint`.
    #[error("{what} of {value} nano-dollars does not fit a bigint")]
    TooLarge {
        /// Which figure.
        what: &'static str,
        /// Its value.
        value: u64,
    },
}

pub(crate) fn db(what: &'static str) -> impl FnOnce(tokio_postgres::Error) -> PgError {
    move |source| PgError::Db { what, source }
}

/// A connection to the shared ledger, as one replica.
pub struct SharedLedger {
    conn: conn::Conn,
    replica: String,
    ttl: Duration,
    next: std::sync::atomic::AtomicU64,
}

impl SharedLedger {
    /// Connects to `url` (`postgres://user@host:port/db`) as replica `replica`, and applies the
    /// migrations this build knows. Leases live `ttl` unless renewed.
    ///
    /// TLS as libpq's `sslmode` says: `disable`; `allow`/`prefer` (the default: TLS when the
    /// server offers it, unauthenticated); `require` (TLS; the server's certificate checked
    /// against `sslrootcert` when given); `verify-ca` (its chain checked against the system's
    /// roots and `sslrootcert=PATH`); `verify-full` (and its name against the host).
    ///
    /// A statement that finds the connection gone is tried again on a new one for up to
    /// [`SharedLedger::PATIENCE`] from the start of the outage; after that, calls fail at once
    /// until the database answers again.
    ///
    /// # Errors
    /// [`PgError::Url`] or [`PgError::RootCert`] for a URL that cannot be used; [`PgError::Db`]
    /// when the database cannot be reached; [`PgError::NewerSchema`] when its schema is newer
    /// than this build's.
    pub async fn connect(
        url: &str,
        replica: impl Into<String>,
        ttl: Duration,
    ) -> Result<SharedLedger, PgError> {
        Self::connect_with(url, replica, ttl, Self::PATIENCE).await
    }

    /// How long statements keep trying to reach a database that went away, by default.
    pub const PATIENCE: Duration = Duration::from_secs(5);

    /// [`SharedLedger::connect`] with statements trying for `patience` to reach a database that
    /// went away.
    ///
    /// # Errors
    /// As [`SharedLedger::connect`].
    pub async fn connect_with(
        url: &str,
        replica: impl Into<String>,
        ttl: Duration,
        patience: Duration,
    ) -> Result<SharedLedger, PgError> {
        let conn = conn::Conn::open(conn::Target::parse(url)?, patience).await?;
        migrations::apply(&*conn.session().await?).await?;
        // The name given and when it connected: a replica restarted under the same name (a
        // container's pid 1) must not take up its earlier life's leases, ticks or tasks.
        let replica = format!(
            "{}-{:x}",
            replica.into(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_micros())
        );
        Ok(SharedLedger {
            conn,
            replica,
            ttl,
            next: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// How long a lease lives unless renewed.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// This replica's name: the name it connected with, and when (`NAME-MICROS_HEX`), unique
    /// across restarts.
    pub fn replica(&self) -> &str {
        &self.replica
    }

    pub(crate) fn conn(&self) -> &conn::Conn {
        &self.conn
    }
}

/// A nano-dollar amount as a `bigint`.
pub(crate) fn big(what: &'static str, n: baton_core::NanoUsd) -> Result<i64, PgError> {
    i64::try_from(n.0).map_err(|_| PgError::TooLarge { what, value: n.0 })
}

/// A `bigint` read back (never negative: the schema checks it).
pub(crate) fn nanos(n: i64) -> baton_core::NanoUsd {
    baton_core::NanoUsd(u64::try_from(n).unwrap_or(0))
}
