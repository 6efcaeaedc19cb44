//! What the tests against a real PostgreSQL share (feature `testing`).

/// A fresh, empty database on the test server for test `name`, as a URL; `None`, the reason
/// printed, when there is no test server (`BATON_TEST_POSTGRES_URL` unset), unless
/// `BATON_REQUIRE_POSTGRES=1`, which makes that a failure.
///
/// # Panics
/// When the test server is required and missing, or cannot create the database.
pub async fn database(name: &str) -> Option<String> {
    let Ok(url) = std::env::var("BATON_TEST_POSTGRES_URL") else {
        assert!(
            std::env::var("BATON_REQUIRE_POSTGRES").as_deref() != Ok("1"),
            "BATON_REQUIRE_POSTGRES=1 but BATON_TEST_POSTGRES_URL is not set"
        );
        eprintln!("SKIPPED: no PostgreSQL (set BATON_TEST_POSTGRES_URL, as .ci/run does)");
        return None;
    };
    let (admin, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("the test server answers");
    tokio::spawn(conn);
    let db = format!("baton_test_{name}_{}", std::process::id());
    // (One statement a call: DROP and CREATE DATABASE cannot share a transaction.)
    for sql in [
        format!("DROP DATABASE IF EXISTS {db}"),
        format!("CREATE DATABASE {db}"),
    ] {
        admin.batch_execute(&sql).await.expect("a test database");
    }
    // The same server and role, the new database.
    let base = url.rsplit_once('/').map_or(url.as_str(), |(b, _)| b);
    Some(format!("{base}/{db}"))
}
