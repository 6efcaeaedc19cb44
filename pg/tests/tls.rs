//! TLS to the database, as to a managed PostgreSQL: the test server speaks TLS with a
//! certificate from a CA of its own (`.ci/run` makes both with openssl and sets
//! `BATON_TEST_POSTGRES_CA` to the CA's PEM). Skipped, saying why, without it, unless
//! `BATON_REQUIRE_POSTGRES_TLS=1`.

use std::time::Duration;

use baton_pg::testing::database;
use baton_pg::{PgError, SharedLedger};

/// The test server's CA, or `None` (the reason printed).
fn ca() -> Option<String> {
    match std::env::var("BATON_TEST_POSTGRES_CA") {
        Ok(ca) => Some(ca),
        Err(_) => {
            assert!(
                std::env::var("BATON_REQUIRE_POSTGRES_TLS").as_deref() != Ok("1"),
                "BATON_REQUIRE_POSTGRES_TLS=1 but BATON_TEST_POSTGRES_CA is not set"
            );
            eprintln!(
                "SKIPPED: the test server's TLS CA is not known (BATON_TEST_POSTGRES_CA, as .ci/run sets)"
            );
            None
        }
    }
}

fn with(url: &str, query: &str) -> String {
    format!("{url}?{query}")
}

/// `sslmode=require` with the server's CA as `sslrootcert`: the session is encrypted (the server
/// says so in `pg_stat_ssl`). Without the CA the server's certificate is not trusted and the
/// connection is refused; an unreadable `sslrootcert` is named.
#[tokio::test]
async fn require_verifies_the_server_against_sslrootcert() {
    let Some(ca) = ca() else { return };
    let Some(url) = database("tls").await else {
        return;
    };
    let ledger = SharedLedger::connect(
        &with(&url, &format!("sslmode=require&sslrootcert={ca}")),
        "tls",
        Duration::from_secs(30),
    )
    .await
    .expect("connects over TLS");
    ledger
        .ensure_budget("b", Some(baton_core::NanoUsd(1)))
        .await
        .expect("a statement over TLS");
    let (admin, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("connects");
    tokio::spawn(conn);
    let db = url.rsplit('/').next().expect("a database name").to_string();
    let encrypted: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
             WHERE s.ssl AND a.datname = $1",
            &[&db],
        )
        .await
        .expect("pg_stat_ssl")
        .get(0);
    assert!(encrypted >= 1, "the ledger's session is encrypted");

    let untrusted = SharedLedger::connect_with(
        &with(&url, "sslmode=require"),
        "tls",
        Duration::from_secs(30),
        Duration::ZERO,
    )
    .await;
    let Err(e) = untrusted else {
        panic!("a server whose CA is not trusted was accepted");
    };
    assert!(
        format!("{e:?}").to_lowercase().contains("certificate"),
        "the refusal names the certificate: {e:?}"
    );

    let missing = SharedLedger::connect(
        &with(&url, "sslmode=require&sslrootcert=/nonexistent/ca.pem"),
        "tls",
        Duration::from_secs(30),
    )
    .await;
    match missing {
        Err(PgError::RootCert { path, .. }) => assert_eq!(path, "/nonexistent/ca.pem"),
        Err(e) => panic!("expected the sslrootcert named, got {e}"),
        Ok(_) => panic!("an unreadable sslrootcert was accepted"),
    }
}
