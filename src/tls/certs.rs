//! PEM loading (rustls-pki-types) and load-time checks: presence, key/cert fit, validity
//! window and SAN names (x509-parser).

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::error::X509Error;
use x509_parser::extensions::GeneralName;
use x509_parser::time::ASN1Time;

use super::TlsError;
use crate::config::model::CertPair;

/// Certificates expiring sooner than this produce a warning (30 days).
pub const EXPIRY_WARNING_SECS: i64 = 30 * 24 * 60 * 60;

/// A certificate chain with its key, checked and ready to serve or present.
pub(crate) struct LoadedPair {
    pub certified: Arc<CertifiedKey>,
    /// Kept for `ClientConfig::with_client_auth_cert`, which wants the DER again.
    pub key: PrivateKeyDer<'static>,
    /// Lower-case DNS SANs and textual IP SANs of the leaf.
    pub names: Vec<String>,
    pub not_after: i64,
    pub warning: Option<String>,
}

/// What the leaf certificate says about itself.
pub(crate) struct CertInfo {
    pub names: Vec<String>,
    pub not_before: i64,
    pub not_after: i64,
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// `YYYY-MM-DD` (UTC) for a unix timestamp; the raw number if it is out of range.
pub fn format_date(secs: i64) -> String {
    match ASN1Time::from_timestamp(secs) {
        Ok(t) => t.to_datetime().date().to_string(),
        Err(_) => secs.to_string(),
    }
}

fn pem_error(what: &'static str, path: &Path, err: pem::Error) -> TlsError {
    match err {
        pem::Error::Io(source) if source.kind() == io::ErrorKind::NotFound => TlsError::Missing {
            what,
            path: path.to_path_buf(),
        },
        pem::Error::Io(source) => TlsError::Unreadable {
            what,
            path: path.to_path_buf(),
            source,
        },
        source => TlsError::BadPem {
            what,
            path: path.to_path_buf(),
            source,
        },
    }
}

/// Every certificate in a PEM file, in order; at least one.
pub(crate) fn load_certs(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(what, path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(what, path, e))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// The first private key (PKCS#8, PKCS#1 or SEC1) in a PEM file.
pub(crate) fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| match e {
        pem::Error::NoItemsFound => TlsError::NoPrivateKey {
            path: path.to_path_buf(),
        },
        other => pem_error("private key", path, other),
    })
}

/// Parses the leaf for its validity window and SAN names.
pub(crate) fn inspect(path: &Path, der: &CertificateDer<'_>) -> Result<CertInfo, TlsError> {
    let bad = |source| TlsError::BadCertificate {
        path: path.to_path_buf(),
        source,
    };
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| match e {
        x509_parser::nom::Err::Error(e) | x509_parser::nom::Err::Failure(e) => bad(e),
        x509_parser::nom::Err::Incomplete(_) => bad(X509Error::InvalidCertificate),
    })?;
    let mut names = Vec::new();
    if let Some(san) = cert.subject_alternative_name().map_err(bad)? {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(dns) => {
                    let dns = dns.trim_end_matches('.').to_ascii_lowercase();
                    if !dns.is_empty() && !names.contains(&dns) {
                        names.push(dns);
                    }
                }
                GeneralName::IPAddress(bytes) => {
                    if let Some(ip) = ip_from_bytes(bytes) {
                        names.push(ip.to_string());
                    }
                }
                _ => {}
            }
        }
    }
    let validity = cert.validity();
    Ok(CertInfo {
        names,
        not_before: validity.not_before.timestamp(),
        not_after: validity.not_after.timestamp(),
    })
}

fn ip_from_bytes(bytes: &[u8]) -> Option<std::net::IpAddr> {
    if let Ok(v4) = <[u8; 4]>::try_from(bytes) {
        return Some(v4.into());
    }
    <[u8; 16]>::try_from(bytes).ok().map(Into::into)
}

/// Fails on an expired or not-yet-valid certificate; warns when it expires within 30 days.
pub(crate) fn check_validity(
    path: &Path,
    info: &CertInfo,
    now: i64,
) -> Result<Option<String>, TlsError> {
    if now < info.not_before {
        return Err(TlsError::NotYetValid {
            path: path.to_path_buf(),
            not_before: format_date(info.not_before),
        });
    }
    if now > info.not_after {
        return Err(TlsError::Expired {
            path: path.to_path_buf(),
            not_after: format_date(info.not_after),
        });
    }
    let left = info.not_after - now;
    Ok((left < EXPIRY_WARNING_SECS).then(|| {
        format!(
            "{} expires in {} days ({})",
            path.display(),
            left / 86_400,
            format_date(info.not_after)
        )
    }))
}

/// Loads a cert/key pair and runs every load-time check on it.
pub(crate) fn load_pair(
    pair: &CertPair,
    provider: &CryptoProvider,
    now: i64,
) -> Result<LoadedPair, TlsError> {
    let chain = load_certs("certificate", &pair.cert)?;
    let key = load_key(&pair.key)?;
    let info = inspect(&pair.cert, &chain[0])?;
    let warning = check_validity(&pair.cert, &info, now)?;
    let certified =
        CertifiedKey::from_der(chain, key.clone_key(), provider).map_err(
            |source| match source {
                rustls::Error::InconsistentKeys(_) => TlsError::KeyMismatch {
                    cert: pair.cert.clone(),
                    key: pair.key.clone(),
                    source: Box::new(source),
                },
                source => TlsError::BadKey {
                    path: pair.key.clone(),
                    source: Box::new(source),
                },
            },
        )?;
    Ok(LoadedPair {
        certified: Arc::new(certified),
        key,
        names: info.names,
        not_after: info.not_after,
        warning,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::tls::crypto_provider;
    use crate::tls::test_support::{ca, leaf, write_leaf, write_pair};

    const DAY: i64 = 86_400;

    #[test]
    fn loads_a_good_pair_with_its_names() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ca("test ca");
        let pair = write_leaf(dir.path(), "site", &ca, &["Example.COM", "127.0.0.1"]);
        let loaded = load_pair(&pair, &crypto_provider(), unix_now()).unwrap();
        assert_eq!(loaded.names, vec!["example.com", "127.0.0.1"]);
        assert!(loaded.warning.is_none());
        assert!(loaded.not_after > unix_now() + 300 * DAY);
    }

    #[test]
    fn mismatched_key_names_both_files() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ca("test ca");
        let a = write_leaf(dir.path(), "a", &ca, &["a.test"]);
        let b = write_leaf(dir.path(), "b", &ca, &["b.test"]);
        let crossed = CertPair {
            cert: a.cert.clone(),
            key: b.key.clone(),
        };
        let err = load_pair(&crossed, &crypto_provider(), unix_now())
            .err()
            .unwrap();
        assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("a.pem") && msg.contains("b.key"), "{msg}");
    }

    #[test]
    fn expired_and_not_yet_valid_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ca("test ca");
        let now = unix_now();
        let (cert, key) = leaf(&ca, &["old.test"], now - 100 * DAY, now - 10 * DAY);
        let old = write_pair(dir.path(), "old", &cert, &key);
        let err = load_pair(&old, &crypto_provider(), now).err().unwrap();
        assert!(matches!(err, TlsError::Expired { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("old.pem"), "{msg}");
        assert!(msg.contains(&format_date(now - 10 * DAY)), "{msg}");

        let (cert, key) = leaf(&ca, &["new.test"], now + 10 * DAY, now + 100 * DAY);
        let new = write_pair(dir.path(), "new", &cert, &key);
        let err = load_pair(&new, &crypto_provider(), now).err().unwrap();
        assert!(matches!(err, TlsError::NotYetValid { .. }), "{err:?}");
    }

    #[test]
    fn near_expiry_warns_with_days_and_date() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ca("test ca");
        let now = unix_now();
        let (cert, key) = leaf(&ca, &["soon.test"], now - DAY, now + 12 * DAY + 60);
        let pair = write_pair(dir.path(), "soon", &cert, &key);
        let loaded = load_pair(&pair, &crypto_provider(), now).unwrap();
        let warning = loaded.warning.unwrap();
        assert!(warning.contains("soon.pem expires in 12 days"), "{warning}");
        assert!(warning.contains(&format_date(now + 12 * DAY + 60)));
    }

    #[test]
    fn missing_empty_and_keyless_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ca("test ca");
        let good = write_leaf(dir.path(), "good", &ca, &["good.test"]);
        let provider = crypto_provider();

        let missing = CertPair {
            cert: dir.path().join("nope.pem"),
            key: good.key.clone(),
        };
        let err = load_pair(&missing, &provider, unix_now()).err().unwrap();
        assert!(matches!(err, TlsError::Missing { .. }), "{err:?}");
        assert!(err.to_string().contains("nope.pem"));

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not pem at all\n").unwrap();
        let err = load_certs("certificate", &empty).err().unwrap();
        assert!(matches!(err, TlsError::NoCertificate { .. }), "{err:?}");
        assert!(err.to_string().contains("empty.pem"));

        let keyless = CertPair {
            cert: good.cert.clone(),
            key: good.cert.clone(),
        };
        let err = load_pair(&keyless, &provider, unix_now()).err().unwrap();
        assert!(matches!(err, TlsError::NoPrivateKey { .. }), "{err:?}");
        assert!(err.to_string().contains("good.pem"));
    }

    #[test]
    fn format_date_is_iso() {
        assert_eq!(format_date(0), "1970-01-01");
        assert_eq!(format_date(1_796_860_800), "2026-12-10");
    }
}
