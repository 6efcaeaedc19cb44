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

/// How many of database `db`'s sessions are encrypted, as the server sees them.
async fn encrypted_sessions(url: &str) -> i64 {
    let (admin, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connects");
    tokio::spawn(conn);
    let db = url.rsplit('/').next().expect("a database name").to_string();
    admin
        .query_one(
            "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
             WHERE s.ssl AND a.datname = $1",
            &[&db],
        )
        .await
        .expect("pg_stat_ssl")
        .get(0)
}

async fn connect(url: &str) -> Result<SharedLedger, PgError> {
    SharedLedger::connect_with(url, "tls", Duration::from_secs(30), Duration::ZERO).await
}

/// libpq's `sslmode`s against a server whose certificate comes from a CA of its own:
/// `verify-full` with the CA as `sslrootcert` connects encrypted (the server says so in
/// `pg_stat_ssl`); `verify-ca` without it refuses the unknown issuer, naming the certificate;
/// `require` and the default `prefer` encrypt without checking (as libpq does); a mode libpq does
/// not have and an unreadable `sslrootcert` are named.
#[tokio::test]
async fn sslmodes_as_libpq_documents_them() {
    let Some(ca) = ca() else { return };
    let Some(url) = database("tls").await else {
        return;
    };
    let ledger = connect(&with(
        &url,
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    ))
    .await
    .expect("connects over TLS, the server verified");
    ledger
        .ensure_budget("b", Some(baton_core::NanoUsd(1)))
        .await
        .expect("a statement over TLS");
    assert_eq!(
        encrypted_sessions(&url).await,
        1,
        "the ledger's session is encrypted"
    );

    match connect(&with(&url, "sslmode=verify-ca")).await {
        Ok(_) => panic!("a server whose CA is not trusted was accepted"),
        Err(e) => assert!(
            format!("{e:?}").contains("UnknownIssuer"),
            "the refusal names the certificate's issuer: {e:?}"
        ),
    }
    let _required = connect(&with(&url, "sslmode=require"))
        .await
        .expect("require encrypts without checking the certificate");
    let _preferred = connect(&url).await.expect("prefer takes the TLS offered");
    assert_eq!(encrypted_sessions(&url).await, 3);

    match connect(&with(&url, "sslmode=verify-everything")).await {
        Err(PgError::SslMode(m)) => assert_eq!(m, "verify-everything"),
        Err(e) => panic!("expected the sslmode named, got {e}"),
        Ok(_) => panic!("an unknown sslmode was accepted"),
    }
    match connect(&with(
        &url,
        "sslmode=verify-ca&sslrootcert=/nonexistent/ca.pem",
    ))
    .await
    {
        Err(PgError::RootCert { path, .. }) => assert_eq!(path, "/nonexistent/ca.pem"),
        Err(e) => panic!("expected the sslrootcert named, got {e}"),
        Ok(_) => panic!("an unreadable sslrootcert was accepted"),
    }
}
