//! The connection to the database: TLS when the server offers it (and required by
//! `sslmode=require`), re-established after the database or the network comes back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject as _;

use crate::{PgError, db};

/// How to reach the database, parsed once from its URL.
pub(crate) struct Target {
    config: tokio_postgres::Config,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
}

impl Target {
    /// Parses `url` (`postgres://user:password@host:port/db?sslmode=…`). `sslmode` as libpq
    /// documents it: `disable` (no TLS), `allow` and `prefer` (the default: TLS when the server
    /// offers it, its certificate not checked), `require` (TLS; the certificate checked against
    /// `sslrootcert` when one is given, as libpq does when a root file exists), `verify-ca` (TLS,
    /// the certificate chain checked against the system's roots and `sslrootcert`) and
    /// `verify-full` (that, and the certificate names the host). `sslrootcert=PATH` is a PEM
    /// bundle (a managed database's CA).
    pub(crate) fn parse(url: &str) -> Result<Target, PgError> {
        let (url, root_cert) = take_param(url, "sslrootcert");
        let (url, mode) = take_param(&url, "sslmode");
        let mode = mode.unwrap_or_else(|| "prefer".to_string());
        let mut config: tokio_postgres::Config =
            url.parse().map_err(|source| PgError::Url { source })?;
        let check = match mode.as_str() {
            "disable" => {
                config.ssl_mode(tokio_postgres::config::SslMode::Disable);
                Check::Nothing
            }
            "allow" | "prefer" => {
                config.ssl_mode(tokio_postgres::config::SslMode::Prefer);
                Check::Nothing
            }
            "require" => {
                config.ssl_mode(tokio_postgres::config::SslMode::Require);
                if root_cert.is_some() {
                    Check::Chain
                } else {
                    Check::Nothing
                }
            }
            "verify-ca" => {
                config.ssl_mode(tokio_postgres::config::SslMode::Require);
                Check::Chain
            }
            "verify-full" => {
                config.ssl_mode(tokio_postgres::config::SslMode::Require);
                Check::Full
            }
            other => return Err(PgError::SslMode(other.to_string())),
        };
        let roots = roots(root_cert)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls_error = |e: String| PgError::RootCert {
            path: String::new(),
            why: e,
        };
        let chain = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::clone(&provider),
        )
        .build()
        .map_err(|e| tls_error(e.to_string()))?;
        let verifier = Arc::new(Verifier {
            chain,
            check,
            provider: Arc::clone(&provider),
        });
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_error(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(Target {
            config,
            tls: tokio_postgres_rustls::MakeRustlsConnect::new(tls),
        })
    }

    async fn connect(&self) -> Result<tokio_postgres::Client, PgError> {
        let (client, connection) = self
            .config
            .connect(self.tls.clone())
            .await
            .map_err(db("connecting"))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!("the shared ledger's connection ended: {e}");
            }
        });
        Ok(client)
    }
}

/// The system's roots and the PEM certificates at `root_cert`, if given.
fn roots(root_cert: Option<String>) -> Result<rustls::RootCertStore, PgError> {
    let mut roots = rustls::RootCertStore::empty();
    // The system's roots (a missing or unreadable store leaves only `sslrootcert`'s).
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    let Some(path) = root_cert else {
        return Ok(roots);
    };
    let bad = |why: String| PgError::RootCert {
        path: path.clone(),
        why,
    };
    let pem = std::fs::read(&path).map_err(|e| bad(e.to_string()))?;
    let mut added = 0;
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots
            .add(cert.map_err(|e| bad(e.to_string()))?)
            .map_err(|e| bad(e.to_string()))?;
        added += 1;
    }
    if added == 0 {
        return Err(bad("no PEM certificate in it".into()));
    }
    Ok(roots)
}

/// What of the server's certificate is checked (libpq's `sslmode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// Nothing (`prefer`, `require` without `sslrootcert`): encryption without authentication.
    Nothing,
    /// Its chain up to a trusted root (`verify-ca`; `require` with `sslrootcert`).
    Chain,
    /// Its chain and that it names the host (`verify-full`).
    Full,
}

/// The server's certificate checked as `sslmode` says.
#[derive(Debug)]
struct Verifier {
    chain: Arc<rustls::client::WebPkiServerVerifier>,
    check: Check,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl rustls::client::danger::ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        intermediates: &[rustls::pki_types::CertificateDer<'_>],
        server_name: &rustls::pki_types::ServerName<'_>,
        ocsp: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        use rustls::CertificateError::{NotValidForName, NotValidForNameContext};
        if self.check == Check::Nothing {
            return Ok(rustls::client::danger::ServerCertVerified::assertion());
        }
        match self
            .chain
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                NotValidForName | NotValidForNameContext { .. },
            )) if self.check == Check::Chain => {
                Ok(rustls::client::danger::ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// `url` without its query parameter `name`, and that parameter's value.
fn take_param(url: &str, name: &str) -> (String, Option<String>) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_string(), None);
    };
    let mut value = None;
    let rest: Vec<&str> = query
        .split('&')
        .filter(|p| match p.split_once('=') {
            Some((k, v)) if k == name => {
                value = Some(v.to_string());
                false
            }
            _ => true,
        })
        .collect();
    if rest.is_empty() {
        (base.to_string(), value)
    } else {
        (format!("{base}?{}", rest.join("&")), value)
    }
}

/// A client that reconnects: a statement that finds the connection gone is tried again on a new
/// one, for up to `patience` from the start of the outage (so that during a long outage every
/// caller fails fast, after one attempt, instead of each waiting its own `patience`).
pub(crate) struct Conn {
    target: Target,
    client: tokio::sync::Mutex<Option<Arc<tokio_postgres::Client>>>,
    /// When statements began failing for want of a connection, if they are failing.
    outage: std::sync::Mutex<Option<Instant>>,
    patience: Duration,
}

impl Conn {
    pub(crate) async fn open(target: Target, patience: Duration) -> Result<Conn, PgError> {
        let client = target.connect().await?;
        Ok(Conn {
            target,
            client: tokio::sync::Mutex::new(Some(Arc::new(client))),
            outage: std::sync::Mutex::new(None),
            patience,
        })
    }

    /// The live client, connecting anew if the last one's connection ended.
    async fn client(&self) -> Result<Arc<tokio_postgres::Client>, PgError> {
        let mut slot = self.client.lock().await;
        if let Some(c) = slot.as_ref().filter(|c| !c.is_closed()) {
            return Ok(Arc::clone(c));
        }
        *slot = None;
        let c = Arc::new(self.target.connect().await?);
        tracing::info!("the shared ledger's connection is back");
        *slot = Some(Arc::clone(&c));
        Ok(c)
    }

    /// Runs `op` on the client; when it fails because the connection is gone (or a new one
    /// cannot be made), waits and tries again on a new connection, until `patience` has passed
    /// since the outage began. Only for statements that are safe to repeat: idempotent ones, or
    /// ones whose lost effect is made good otherwise (a lease whose reply was lost is never
    /// renewed, so it expires and returns to its budget).
    pub(crate) async fn run<T, F, Fut>(&self, what: &'static str, op: F) -> Result<T, PgError>
    where
        F: Fn(Arc<tokio_postgres::Client>) -> Fut,
        Fut: std::future::Future<Output = Result<T, tokio_postgres::Error>>,
    {
        let mut pause = Duration::from_millis(50);
        loop {
            let result = match self.client().await {
                Ok(c) => {
                    let r = op(Arc::clone(&c)).await;
                    match r {
                        Ok(v) => Ok(v),
                        // A statement error on a live connection (a CHECK, a syntax error) is
                        // the statement's, not the network's: no retry.
                        Err(e) if !c.is_closed() && !is_connection(&e) => {
                            return Err(PgError::Db { what, source: e });
                        }
                        Err(e) => Err(PgError::Db { what, source: e }),
                    }
                }
                Err(e) => Err(e),
            };
            let began = {
                let mut outage = self
                    .outage
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if result.is_ok() {
                    *outage = None;
                    None
                } else {
                    Some(*outage.get_or_insert_with(Instant::now))
                }
            };
            match began {
                None => return result,
                Some(began) if began.elapsed() >= self.patience => return result,
                Some(_) => {
                    metrics::counter!("baton_shared_db_retries_total", "what" => what).increment(1);
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
            }
        }
    }

    /// The current client, for statements that must share one session (the migrations' advisory
    /// lock): no retry.
    pub(crate) async fn session(&self) -> Result<Arc<tokio_postgres::Client>, PgError> {
        self.client().await
    }
}

/// Whether `e` means the connection (not the statement) failed.
fn is_connection(e: &tokio_postgres::Error) -> bool {
    e.is_closed() || e.as_db_error().is_none() && e.code().is_none()
}

#[cfg(test)]
mod tests {
    use super::take_param;

    #[test]
    fn sslrootcert_is_taken_out_of_the_url() {
        assert_eq!(
            take_param(
                "postgres://h/db?sslmode=require&sslrootcert=/ca.pem",
                "sslrootcert"
            ),
            (
                "postgres://h/db?sslmode=require".to_string(),
                Some("/ca.pem".to_string())
            )
        );
        assert_eq!(
            take_param("postgres://h/db?sslrootcert=/ca.pem", "sslrootcert"),
            ("postgres://h/db".to_string(), Some("/ca.pem".to_string()))
        );
        assert_eq!(
            take_param("postgres://h/db", "sslrootcert"),
            ("postgres://h/db".to_string(), None)
        );
    }
}
