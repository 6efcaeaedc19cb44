//! The shared ledger's schema, as numbered migrations applied in order at connect.
//!
//! `baton_schema` holds the version applied. Each migration runs in one transaction with the
//! version bump, under an advisory lock, so that replicas starting together apply it once.

use crate::{PgError, db};

/// Migration `n` is `MIGRATIONS[n - 1]`. Append only: a migration never changes once released.
pub const MIGRATIONS: &[&str] = &[
    // 1: budgets and the leases drawn from them.
    r"
    CREATE TABLE baton_budgets (
        name text PRIMARY KEY,
        limit_nanousd bigint CHECK (limit_nanousd >= 0),
        spent_nanousd bigint NOT NULL DEFAULT 0 CHECK (spent_nanousd >= 0),
        leased_nanousd bigint NOT NULL DEFAULT 0 CHECK (leased_nanousd >= 0),
        CONSTRAINT never_overspent
            CHECK (limit_nanousd IS NULL OR spent_nanousd + leased_nanousd <= limit_nanousd)
    );
    CREATE TABLE baton_leases (
        id text PRIMARY KEY,
        budget text NOT NULL REFERENCES baton_budgets (name),
        replica text NOT NULL,
        amount_nanousd bigint NOT NULL CHECK (amount_nanousd > 0),
        used_nanousd bigint NOT NULL DEFAULT 0 CHECK (used_nanousd >= 0),
        held_nanousd bigint NOT NULL DEFAULT 0 CHECK (held_nanousd >= 0),
        drawn_at timestamptz NOT NULL DEFAULT now(),
        expires_at timestamptz NOT NULL,
        settled_at timestamptz,
        reaped boolean NOT NULL DEFAULT false,
        CHECK (used_nanousd <= amount_nanousd)
    );
    CREATE INDEX baton_leases_live ON baton_leases (expires_at) WHERE settled_at IS NULL;
    -- A draw: the budget's row locked, what is left read as it stands once the lock is held,
    -- a slice of at most a quarter of it and at least p_need granted (or NULL), and the lease
    -- recorded, in one call.
    CREATE FUNCTION baton_draw(p_budget text, p_need bigint, p_want bigint, p_id text,
                               p_replica text, p_ttl double precision)
    RETURNS bigint LANGUAGE plpgsql AS $$
    DECLARE
        b record;
        left_over bigint;
        slice bigint;
    BEGIN
        SELECT limit_nanousd, spent_nanousd, leased_nanousd INTO b
            FROM baton_budgets WHERE name = p_budget FOR UPDATE;
        IF NOT FOUND THEN
            RETURN NULL;
        END IF;
        IF b.limit_nanousd IS NULL THEN
            slice := p_want;
        ELSE
            left_over := b.limit_nanousd - b.spent_nanousd - b.leased_nanousd;
            slice := LEAST(left_over, GREATEST(p_need, LEAST(p_want, left_over / 4)));
        END IF;
        IF slice < p_need THEN
            RETURN NULL;
        END IF;
        UPDATE baton_budgets SET leased_nanousd = leased_nanousd + slice WHERE name = p_budget;
        INSERT INTO baton_leases (id, budget, replica, amount_nanousd, expires_at)
            VALUES (p_id, p_budget, p_replica, slice, now() + make_interval(secs => p_ttl));
        RETURN slice;
    END
    $$;
    ",
    // 2: standing loops' ticks, each claimed by the one replica that runs it.
    r"
    CREATE TABLE baton_loop_ticks (
        topology text NOT NULL,
        schedule text NOT NULL,
        tick_ms bigint NOT NULL,
        replica text NOT NULL,
        claimed_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (topology, schedule, tick_ms)
    );
    CREATE INDEX baton_loop_ticks_age ON baton_loop_ticks (claimed_at);
    ",
    // 3: the shared task queue, and the events of the tasks in it.
    r"
    CREATE TABLE baton_tasks (
        id bigserial PRIMARY KEY,
        topology text NOT NULL,
        idempotency_key text,
        text text NOT NULL,
        request text NOT NULL,
        status text NOT NULL,
        replica text,
        lease_expires timestamptz,
        attempts integer NOT NULL DEFAULT 0,
        cancel boolean NOT NULL DEFAULT false,
        record text NOT NULL,
        submitted_at timestamptz NOT NULL DEFAULT now(),
        UNIQUE (topology, idempotency_key)
    );
    CREATE INDEX baton_tasks_waiting ON baton_tasks (topology, id)
        WHERE status IN ('queued', 'running');
    CREATE TABLE baton_task_events (
        seq bigserial PRIMARY KEY,
        task bigint NOT NULL,
        data text NOT NULL,
        last boolean NOT NULL DEFAULT false
    );
    CREATE INDEX baton_task_events_task ON baton_task_events (task, seq);
    ",
    // 4: a lease is drawn with the reservation that asked for it reported in flight, so that a
    // replica dying before its first renewal has it booked.
    r"
    CREATE OR REPLACE FUNCTION baton_draw(p_budget text, p_need bigint, p_want bigint, p_id text,
                               p_replica text, p_ttl double precision)
    RETURNS bigint LANGUAGE plpgsql AS $$
    DECLARE
        b record;
        left_over bigint;
        slice bigint;
    BEGIN
        SELECT limit_nanousd, spent_nanousd, leased_nanousd INTO b
            FROM baton_budgets WHERE name = p_budget FOR UPDATE;
        IF NOT FOUND THEN
            RETURN NULL;
        END IF;
        IF b.limit_nanousd IS NULL THEN
            slice := p_want;
        ELSE
            left_over := b.limit_nanousd - b.spent_nanousd - b.leased_nanousd;
            slice := LEAST(left_over, GREATEST(p_need, LEAST(p_want, left_over / 4)));
        END IF;
        IF slice < p_need THEN
            RETURN NULL;
        END IF;
        UPDATE baton_budgets SET leased_nanousd = leased_nanousd + slice WHERE name = p_budget;
        INSERT INTO baton_leases (id, budget, replica, amount_nanousd, held_nanousd, expires_at)
            VALUES (p_id, p_budget, p_replica, slice, p_need,
                    now() + make_interval(secs => p_ttl));
        RETURN slice;
    END
    $$;
    ",
    // 5: what each loop run cost and produced, for every replica's spend circuit breaker.
    r"
    ALTER TABLE baton_loop_ticks
        ADD COLUMN cost_nanousd bigint,
        ADD COLUMN value_nanousd bigint,
        ADD COLUMN completed boolean,
        ADD COLUMN ended_seq bigint;
    CREATE SEQUENCE baton_loop_runs_seq;
    CREATE INDEX baton_loop_ticks_ended ON baton_loop_ticks (topology, schedule, ended_seq)
        WHERE ended_seq IS NOT NULL;
    ",
];

/// The newest schema version this build knows.
pub fn latest() -> i32 {
    i32::try_from(MIGRATIONS.len()).unwrap_or(i32::MAX)
}

/// An arbitrary constant: the advisory lock under which migrations run.
const LOCK: i64 = 0x6261_746f_6e00_0001;

/// Applies the migrations the database lacks.
///
/// # Errors
/// [`PgError::NewerSchema`] when the database is ahead of this build; [`PgError::Db`] otherwise.
pub(crate) async fn apply(client: &tokio_postgres::Client) -> Result<(), PgError> {
    client
        .batch_execute(&format!(
            // The lock first: two sessions racing through CREATE TABLE IF NOT EXISTS can both
            // try to create it (PostgreSQL then reports a duplicate key in pg_type).
            "SELECT pg_advisory_lock({LOCK});
             CREATE TABLE IF NOT EXISTS baton_schema (version integer NOT NULL);"
        ))
        .await
        .map_err(db("creating baton_schema"))?;
    let result = apply_locked(client).await;
    if result.is_err() {
        // A failed migration leaves its transaction open: end it before unlocking.
        let _ = client.batch_execute("ROLLBACK").await;
    }
    let unlocked = client
        .batch_execute(&format!("SELECT pg_advisory_unlock({LOCK})"))
        .await
        .map_err(db("releasing the migration lock"));
    result.and(unlocked.map(|_| ()))
}

async fn apply_locked(client: &tokio_postgres::Client) -> Result<(), PgError> {
    let found: i32 = client
        .query_opt("SELECT version FROM baton_schema", &[])
        .await
        .map_err(db("reading the schema version"))?
        .map_or(0, |r| r.get(0));
    let supported = latest();
    if found > supported {
        return Err(PgError::NewerSchema { found, supported });
    }
    for (i, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(found).unwrap_or(0))
    {
        let version = i32::try_from(i + 1).unwrap_or(i32::MAX);
        let bump = if found == 0 && i == 0 {
            format!("INSERT INTO baton_schema (version) VALUES ({version});")
        } else {
            format!("UPDATE baton_schema SET version = {version};")
        };
        client
            .batch_execute(&format!("BEGIN; {sql}; {bump} COMMIT;"))
            .await
            .map_err(db("applying a migration"))?;
        tracing::info!("shared ledger: schema migrated to version {version}");
    }
    Ok(())
}
