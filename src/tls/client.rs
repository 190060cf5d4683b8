//! Upstream re-encryption: a rustls `ClientConfig` that verifies backends against a CA
//! bundle or the system roots and presents a client certificate for mutual TLS.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls::version::{TLS12, TLS13};
use rustls::{ClientConfig, RootCertStore};

use super::certs::{load_certs, load_pair, unix_now};
use super::{crypto_provider, TlsError};
use crate::config::model::UpstreamTls;

/// Builds the client side of an upstream's TLS: verification against `tls.ca` (or the
/// system roots), the client certificate when set, and ALPN `h2` or `http/1.1`.
pub fn client_config(tls: &UpstreamTls, alpn_h2: bool) -> Result<Arc<ClientConfig>, TlsError> {
    let roots = match &tls.ca {
        Some(path) => Arc::new(ca_roots(path)?),
        None => native_roots()?,
    };
    let provider = crypto_provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&TLS13, &TLS12])
        .map_err(|source| TlsError::Rustls {
            side: "upstream",
            source: Box::new(source),
        })?
        .with_root_certificates(roots);
    let mut config = match &tls.client_cert {
        Some(pair) => {
            let loaded = load_pair(pair, &provider, unix_now())?;
            if let Some(warning) = &loaded.warning {
                tracing::warn!("upstream client certificate: {warning}");
            }
            builder
                .with_client_auth_cert(loaded.certified.cert.clone(), loaded.key)
                .map_err(|source| TlsError::BadKey {
                    path: pair.key.clone(),
                    source: Box::new(source),
                })?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![if alpn_h2 {
        b"h2".to_vec()
    } else {
        b"http/1.1".to_vec()
    }];
    Ok(Arc::new(config))
}

fn ca_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs("CA bundle", path)? {
        roots.add(cert).map_err(|source| TlsError::BadCaBundle {
            path: path.to_path_buf(),
            source: Box::new(source),
        })?;
    }
    Ok(roots)
}

/// The system roots, read once per process: every upstream shares them and reading the
/// platform store is slow.
fn native_roots() -> Result<Arc<RootCertStore>, TlsError> {
    static ROOTS: OnceLock<Result<Arc<RootCertStore>, String>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            let mut roots = RootCertStore::empty();
            let (added, _ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                let detail = found
                    .errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ");
                return Err(if detail.is_empty() {
                    "the platform store is empty".to_owned()
                } else {
                    detail
                });
            }
            for error in &found.errors {
                tracing::debug!("skipped part of the system root store: {error}");
            }
            Ok(Arc::new(roots))
        })
        .clone()
        .map_err(|detail| TlsError::NoNativeRoots { detail })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use rustls::server::WebPkiClientVerifier;
    use rustls::ServerConfig;

    use super::*;
    use crate::config::model::CertPair;
    use crate::tls::test_support::{ca, handshake, write_ca, write_leaf, TestCa};

    fn upstream(ca: Option<std::path::PathBuf>, client_cert: Option<CertPair>) -> UpstreamTls {
        UpstreamTls {
            ca,
            server_name: Some("backend.test".into()),
            client_cert,
        }
    }

    /// A backend serving `pair`, optionally requiring client certificates from `client_ca`.
    fn backend(pair: &CertPair, client_ca: Option<&TestCa>) -> Arc<ServerConfig> {
        let provider = crypto_provider();
        let loaded = load_pair(pair, &provider, unix_now()).unwrap();
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&TLS13, &TLS12])
            .unwrap();
        let builder = match client_ca {
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                roots.add(ca.der.clone()).unwrap();
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .unwrap();
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(loaded.certified.cert.clone(), loaded.key)
            .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(config)
    }

    #[tokio::test]
    async fn verifies_backends_against_the_configured_ca() {
        let dir = tempfile::tempdir().unwrap();
        let trusted = ca("backend ca");
        let stranger = ca("stranger ca");
        let ca_file = write_ca(dir.path(), &trusted);
        let good = write_leaf(dir.path(), "good", &trusted, &["backend.test"]);
        let bad = write_leaf(dir.path(), "bad", &stranger, &["backend.test"]);

        let h1 = client_config(&upstream(Some(ca_file.clone()), None), false).unwrap();
        assert_eq!(h1.alpn_protocols, vec![b"http/1.1".to_vec()]);
        let out = handshake(backend(&good, None), h1.clone(), "backend.test")
            .await
            .unwrap();
        assert_eq!(out.alpn.as_deref(), Some(&b"http/1.1"[..]));
        assert!(!out.server_saw_client_cert);

        let err = handshake(backend(&bad, None), h1, "backend.test")
            .await
            .err()
            .unwrap();
        assert!(err.to_string().contains("UnknownIssuer"), "{err}");

        let h2 = client_config(&upstream(Some(ca_file), None), true).unwrap();
        let out = handshake(backend(&good, None), h2, "backend.test")
            .await
            .unwrap();
        assert_eq!(out.alpn.as_deref(), Some(&b"h2"[..]));
    }

    #[tokio::test]
    async fn presents_the_client_certificate_for_mutual_tls() {
        let dir = tempfile::tempdir().unwrap();
        let backend_ca = ca("backend ca");
        let client_ca = ca("client ca");
        let ca_file = write_ca(dir.path(), &backend_ca);
        let server_pair = write_leaf(dir.path(), "server", &backend_ca, &["backend.test"]);
        let client_pair = write_leaf(dir.path(), "client", &client_ca, &["portico.test"]);
        let server = backend(&server_pair, Some(&client_ca));

        let with_cert =
            client_config(&upstream(Some(ca_file.clone()), Some(client_pair)), false).unwrap();
        let out = handshake(server.clone(), with_cert, "backend.test")
            .await
            .unwrap();
        assert!(out.server_saw_client_cert);

        let without = client_config(&upstream(Some(ca_file), None), false).unwrap();
        assert!(handshake(server, without, "backend.test").await.is_err());
    }

    #[test]
    fn bad_ca_bundle_and_client_key_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing-ca.pem");
        let err = client_config(&upstream(Some(missing), None), false)
            .err()
            .unwrap();
        assert!(matches!(err, TlsError::Missing { .. }), "{err:?}");
        assert!(err.to_string().contains("missing-ca.pem"), "{err}");

        let garbage = dir.path().join("garbage.pem");
        std::fs::write(
            &garbage,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let err = client_config(&upstream(Some(garbage), None), false)
            .err()
            .unwrap();
        assert!(matches!(err, TlsError::BadCaBundle { .. }), "{err:?}");
        assert!(err.to_string().contains("garbage.pem"), "{err}");

        let trusted = ca("ca");
        let ca_file = write_ca(dir.path(), &trusted);
        let a = write_leaf(dir.path(), "a", &trusted, &["a.test"]);
        let b = write_leaf(dir.path(), "b", &trusted, &["b.test"]);
        let crossed = CertPair {
            cert: a.cert,
            key: b.key,
        };
        let err = client_config(&upstream(Some(ca_file), Some(crossed)), false)
            .err()
            .unwrap();
        assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err:?}");
    }

    #[test]
    fn system_roots_load_or_explain_why_not() {
        match client_config(&upstream(None, None), true) {
            Ok(config) => assert_eq!(config.alpn_protocols, vec![b"h2".to_vec()]),
            Err(err) => assert!(matches!(err, TlsError::NoNativeRoots { .. }), "{err:?}"),
        }
    }
}
