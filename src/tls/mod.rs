//! TLS for Portico: the error type, the listener-side `ServerConfig` (SNI resolver, ALPN,
//! tickets, development certificates) and re-exports of the upstream `ClientConfig`.

mod certs;
mod client;
mod resolver;
mod selfsigned;
#[cfg(test)]
pub(crate) mod test_support;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::version::{TLS12, TLS13};
use rustls::ServerConfig;

use crate::config::model::{CertPair, ListenerTls};

pub use certs::{format_date, unix_now, EXPIRY_WARNING_SECS};
pub use client::client_config;
pub use resolver::SniIndex;
pub use selfsigned::{dev_cert_paths, dev_cert_paths_in, trust_instructions, DevCertPaths};

/// ALPN protocols a listener offers, most preferred first.
pub const SERVER_ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// Everything that can go wrong while loading, checking or generating TLS material.
/// Each variant names the file it concerns so the operator knows what to fix.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{what} file {} does not exist", path.display())]
    Missing { what: &'static str, path: PathBuf },
    #[error("cannot read {what} file {}", path.display())]
    Unreadable {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{what} file {} is not valid PEM", path.display())]
    BadPem {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    #[error("no certificate found in {}", path.display())]
    NoCertificate { path: PathBuf },
    #[error("no private key found in {}", path.display())]
    NoPrivateKey { path: PathBuf },
    #[error("private key {} cannot be used", path.display())]
    BadKey {
        path: PathBuf,
        #[source]
        source: Box<rustls::Error>,
    },
    #[error("private key {} does not match certificate {}", key.display(), cert.display())]
    KeyMismatch {
        cert: PathBuf,
        key: PathBuf,
        #[source]
        source: Box<rustls::Error>,
    },
    #[error("cannot parse the certificate in {}", path.display())]
    BadCertificate {
        path: PathBuf,
        #[source]
        source: x509_parser::error::X509Error,
    },
    #[error("certificate {} expired on {not_after}", path.display())]
    Expired { path: PathBuf, not_after: String },
    #[error("certificate {} is not valid before {not_before}", path.display())]
    NotYetValid { path: PathBuf, not_before: String },
    #[error("CA bundle {} contains an unusable certificate", path.display())]
    BadCaBundle {
        path: PathBuf,
        #[source]
        source: Box<rustls::Error>,
    },
    #[error("no usable system root certificates found ({detail}); set the upstream's `ca`")]
    NoNativeRoots { detail: String },
    #[error("cannot generate the development certificate {}", path.display())]
    Generate {
        path: PathBuf,
        #[source]
        source: rcgen::Error,
    },
    #[error("development CA {} cannot sign a usable certificate; move it away to create a new one", path.display())]
    ForeignDevCa {
        path: PathBuf,
        #[source]
        source: Box<rustls::Error>,
    },
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("no certificate configured and no `self_signed` names to generate one")]
    NoCertificates,
    #[error("cannot build the {side} TLS configuration")]
    Rustls {
        /// "listener" or "upstream".
        side: &'static str,
        #[source]
        source: Box<rustls::Error>,
    },
}

/// A listener's ready-to-use TLS material.
#[derive(Debug, Clone)]
pub struct ServerTls {
    pub config: Arc<ServerConfig>,
    /// The same certificates the resolver serves, for Host/SNI consistency checks.
    pub sni: SniIndex,
    /// Human-readable notes for the caller to log, e.g. certificates expiring within 30 days.
    pub warnings: Vec<String>,
    /// Each certificate file and its notAfter (unix seconds), in config order.
    pub not_after: Vec<(PathBuf, i64)>,
}

/// The one crypto provider Portico uses; never the process default.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Builds a listener's TLS configuration, resolving relative paths against the working directory.
pub fn server_tls(tls: &ListenerTls, listener_name: &str) -> Result<ServerTls, TlsError> {
    server_tls_in(tls, listener_name, Path::new(""))
}

/// As [`server_tls`], with relative paths (and the dev-certificate directory) under `base_dir`.
pub fn server_tls_in(
    tls: &ListenerTls,
    listener_name: &str,
    base_dir: &Path,
) -> Result<ServerTls, TlsError> {
    let provider = crypto_provider();
    let pairs: Vec<CertPair> = if selfsigned::wants_dev_cert(tls, base_dir) {
        let paths = selfsigned::ensure_dev_cert(tls, base_dir, listener_name)?;
        vec![CertPair {
            cert: paths.cert,
            key: paths.key,
        }]
    } else {
        tls.certificates
            .iter()
            .map(|p| CertPair {
                cert: base_dir.join(&p.cert),
                key: base_dir.join(&p.key),
            })
            .collect()
    };
    if pairs.is_empty() {
        return Err(TlsError::NoCertificates);
    }

    let now = unix_now();
    let mut entries = Vec::with_capacity(pairs.len());
    let mut warnings = Vec::new();
    let mut not_after = Vec::with_capacity(pairs.len());
    for (i, pair) in pairs.iter().enumerate() {
        let loaded = certs::load_pair(pair, &provider, now)?;
        warnings.extend(loaded.warning);
        if i > 0 && loaded.names.is_empty() {
            // Only the first certificate serves clients without a matching SNI.
            warnings.push(format!(
                "{} has no DNS or IP names in its SANs and is never selected",
                pair.cert.display()
            ));
        }
        not_after.push((pair.cert.clone(), loaded.not_after));
        entries.push((loaded.certified, loaded.names));
    }

    let sni = SniIndex::new(entries);
    let config = build_server_config(provider, sni.clone()).map_err(|source| TlsError::Rustls {
        side: "listener",
        source: Box::new(source),
    })?;
    Ok(ServerTls {
        config,
        sni,
        warnings,
        not_after,
    })
}

fn build_server_config(
    provider: Arc<CryptoProvider>,
    sni: SniIndex,
) -> Result<Arc<ServerConfig>, rustls::Error> {
    let mut config = ServerConfig::builder_with_provider(server_suites_first(provider))
        .with_protocol_versions(&[&TLS13, &TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(sni));
    config.alpn_protocols = SERVER_ALPN.iter().map(|p| p.to_vec()).collect();
    // Stateless tickets let resumption work across the per-process session cache limit.
    config.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new()?;
    // Our suite order, not the client's: AES-128-GCM-SHA256 first, as Go's crypto/tls (and
    // so Caddy) prefers on CPUs with AES and SHA instructions. OpenSSL clients list
    // AES-256-GCM-SHA384 first, whose SHA-384 key schedule made a full handshake cost ~10%
    // more CPU here (docs/performance.md).
    config.ignore_client_order = true;
    // One ticket per handshake, as Go sends: rustls' default of two spends a second
    // ticket's key derivation and record on every full handshake.
    config.send_tls13_tickets = 1;
    Ok(Arc::new(config))
}

/// The provider's suites in the server's order of preference: AES-128-GCM, ChaCha20, then
/// AES-256-GCM (all AEADs; TLS 1.2 suites keep their order after them).
fn server_suites_first(provider: Arc<CryptoProvider>) -> Arc<CryptoProvider> {
    let mut p = (*provider).clone();
    p.cipher_suites.sort_by_key(|s| match s.suite() {
        rustls::CipherSuite::TLS13_AES_128_GCM_SHA256 => 0,
        rustls::CipherSuite::TLS13_CHACHA20_POLY1305_SHA256 => 1,
        rustls::CipherSuite::TLS13_AES_256_GCM_SHA384 => 2,
        _ => 3,
    });
    Arc::new(p)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use rustls::version::{TLS12, TLS13};
    use rustls::ProtocolVersion;
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;

    use super::test_support::{ca, client, client_with, handshake, write_leaf};
    use super::*;
    use crate::config::model::CertPair;

    fn listener_tls(certificates: Vec<CertPair>, self_signed: &[&str]) -> ListenerTls {
        ListenerTls {
            certificates,
            self_signed: self_signed.iter().map(|s| s.to_string()).collect(),
            strict_sni_host: true,
            handshake_timeout: std::time::Duration::from_secs(10),
        }
    }

    fn der(path: &Path) -> CertificateDer<'static> {
        CertificateDer::from_pem_file(path).unwrap()
    }

    #[tokio::test]
    async fn sni_picks_each_certificate_and_falls_back_to_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ca("sni ca");
        let a = write_leaf(dir.path(), "a", &ca, &["a.test"]);
        let b = write_leaf(dir.path(), "b", &ca, &["b.test", "*.wild.test"]);
        let tls = listener_tls(vec![a.clone(), b.clone()], &[]);
        let built = server_tls_in(&tls, "web", dir.path()).unwrap();
        assert!(built.warnings.is_empty(), "{:?}", built.warnings);
        assert_eq!(built.not_after.len(), 2);
        assert_eq!(built.not_after[1].0, b.cert);
        assert_eq!(built.sni.cert_for("x.wild.test"), Some(1));

        let roots = [ca.der.clone()];
        for (name, expected) in [("a.test", &a), ("b.test", &b), ("x.wild.test", &b)] {
            let cfg = Arc::new(client(&roots, &TLS13, &[]));
            let out = handshake(built.config.clone(), cfg, name).await.unwrap();
            assert_eq!(out.server_cert, der(&expected.cert), "{name}");
        }

        // No SNI at all: the default (first) certificate, which the client accepts for a.test.
        let mut no_sni = client(&roots, &TLS13, &[]);
        no_sni.enable_sni = false;
        let out = handshake(built.config.clone(), Arc::new(no_sni), "a.test")
            .await
            .unwrap();
        assert_eq!(out.server_cert, der(&a.cert));

        // An SNI nobody covers also gets the default; the client then rejects the name.
        let cfg = Arc::new(client(&roots, &TLS13, &[]));
        assert!(handshake(built.config.clone(), cfg, "nobody.test")
            .await
            .is_err());
    }

    #[tokio::test]
    async fn tls12_tls13_and_alpn() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ca("alpn ca");
        let pair = write_leaf(dir.path(), "site", &ca, &["site.test"]);
        let built = server_tls_in(&listener_tls(vec![pair], &[]), "web", dir.path()).unwrap();
        let roots = [ca.der.clone()];

        for (version, expected) in [
            (&TLS12, ProtocolVersion::TLSv1_2),
            (&TLS13, ProtocolVersion::TLSv1_3),
        ] {
            let cfg = Arc::new(client(&roots, version, &[b"h2", b"http/1.1"]));
            let out = handshake(built.config.clone(), cfg.clone(), "site.test")
                .await
                .unwrap();
            assert_eq!(out.version, expected);
            assert_eq!(out.alpn.as_deref(), Some(&b"h2"[..]));
            assert!(!out.resumed);
            // The same client (same session cache) resumes on its next connection.
            let again = handshake(built.config.clone(), cfg, "site.test")
                .await
                .unwrap();
            assert!(again.resumed, "{expected:?} did not resume");
        }

        let cfg = Arc::new(client(&roots, &TLS13, &[b"http/1.1"]));
        let out = handshake(built.config.clone(), cfg, "site.test")
            .await
            .unwrap();
        assert_eq!(out.alpn.as_deref(), Some(&b"http/1.1"[..]));

        let cfg = Arc::new(client(&roots, &TLS13, &[]));
        let out = handshake(built.config.clone(), cfg, "site.test")
            .await
            .unwrap();
        assert_eq!(out.alpn, None);
        assert_eq!(
            built.config.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        assert!(built.config.ticketer.enabled());
    }

    #[tokio::test]
    async fn server_suite_order_wins_but_a_client_gets_a_suite_it_offers() {
        use rustls::CipherSuite as S;
        let dir = tempfile::tempdir().unwrap();
        let ca = ca("suite ca");
        let pair = write_leaf(dir.path(), "site", &ca, &["site.test"]);
        let built = server_tls_in(&listener_tls(vec![pair], &[]), "web", dir.path()).unwrap();
        let roots = [ca.der.clone()];
        // rustls' own client, like OpenSSL's, lists AES-256-GCM-SHA384 first.
        let cfg = client(&roots, &TLS13, &[]);
        assert_eq!(
            cfg.crypto_provider().cipher_suites[0].suite(),
            S::TLS13_AES_256_GCM_SHA384
        );
        let out = handshake(built.config.clone(), Arc::new(cfg), "site.test")
            .await
            .unwrap();
        assert_eq!(out.suite, S::TLS13_AES_128_GCM_SHA256);
        assert_eq!(built.config.send_tls13_tickets, 1);

        let mut only_256 = (*crypto_provider()).clone();
        only_256
            .cipher_suites
            .retain(|s| s.suite() == S::TLS13_AES_256_GCM_SHA384);
        let cfg = client_with(Arc::new(only_256), &roots, &TLS13, &[]);
        let out = handshake(built.config.clone(), Arc::new(cfg), "site.test")
            .await
            .unwrap();
        assert_eq!(out.suite, S::TLS13_AES_256_GCM_SHA384);
    }

    #[tokio::test]
    async fn generated_dev_certificate_verifies_against_its_ca() {
        let dir = tempfile::tempdir().unwrap();
        let tls = listener_tls(vec![], &["localhost", "dev.test"]);
        let built = server_tls_in(&tls, "dev", dir.path()).unwrap();
        let paths = dev_cert_paths_in(&tls, dir.path());
        assert_eq!(paths.cert, dir.path().join("certs/portico-dev.pem"));
        assert_eq!(built.not_after[0].0, paths.cert);
        assert_eq!(built.sni.cert_for("127.0.0.1"), Some(0));

        let roots = [der(&paths.ca_cert)];
        for name in ["localhost", "dev.test", "127.0.0.1", "::1"] {
            let cfg = Arc::new(client(&roots, &TLS13, &[]));
            let out = handshake(built.config.clone(), cfg, name).await.unwrap();
            assert_eq!(out.server_cert, der(&paths.cert), "{name}");
        }
    }

    #[test]
    fn missing_file_is_named_and_nothing_configured_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let pair = CertPair {
            cert: "absent.pem".into(),
            key: "absent.key".into(),
        };
        let err = server_tls_in(&listener_tls(vec![pair], &[]), "web", dir.path())
            .err()
            .unwrap();
        assert!(matches!(err, TlsError::Missing { .. }), "{err:?}");
        assert!(err.to_string().contains("absent.pem"), "{err}");

        let err = server_tls_in(&listener_tls(vec![], &[]), "web", dir.path())
            .err()
            .unwrap();
        assert!(matches!(err, TlsError::NoCertificates), "{err:?}");
    }

    #[test]
    fn error_stays_small_enough_to_nest() {
        // Callers wrap TlsError in their own enums; clippy's result_large_err starts at 128.
        assert!(std::mem::size_of::<TlsError>() <= 80);
    }
}
