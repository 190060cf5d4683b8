//! Development certificates (like Caddy's local HTTPS or mkcert): a local CA created once
//! and reused, and a 90-day leaf for the listener's `self_signed` names signed by it.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls::RootCertStore;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use x509_parser::error::X509Error;
use x509_parser::time::ASN1Time;

use super::certs::{format_date, inspect, load_certs, load_key, unix_now};
use super::{crypto_provider, TlsError};
use crate::config::model::ListenerTls;

const DAY: i64 = 86_400;
const CA_VALIDITY_SECS: i64 = 10 * 365 * DAY;
const LEAF_VALIDITY_SECS: i64 = 90 * DAY;
/// A leaf this close to its notAfter is replaced at startup.
const LEAF_RENEW_SECS: i64 = 7 * DAY;
/// Backdating absorbs small clock differences between this host and its clients.
const BACKDATE_SECS: i64 = 3600;
const CA_COMMON_NAME: &str = "Portico Development CA";
const ORGANIZATION: &str = "Portico (development only)";

/// Where a listener's development certificate, key and CA live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevCertPaths {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The CA certificate clients must trust.
    pub ca_cert: PathBuf,
    /// The CA private key (mode 0600); never share or commit it.
    pub ca_key: PathBuf,
}

/// Development certificate paths relative to the working directory.
pub fn dev_cert_paths(tls: &ListenerTls) -> DevCertPaths {
    dev_cert_paths_in(tls, Path::new(""))
}

/// Development certificate paths under `base_dir`: the first configured pair if any, else
/// `certs/portico-dev.{pem,key}`; the CA always sits in `certs/`.
pub fn dev_cert_paths_in(tls: &ListenerTls, base_dir: &Path) -> DevCertPaths {
    let dir = base_dir.join("certs");
    let (cert, key) = match tls.certificates.first() {
        Some(pair) => (base_dir.join(&pair.cert), base_dir.join(&pair.key)),
        None => (dir.join("portico-dev.pem"), dir.join("portico-dev.key")),
    };
    DevCertPaths {
        cert,
        key,
        ca_cert: dir.join("portico-dev-ca.pem"),
        ca_key: dir.join("portico-dev-ca.key"),
    }
}

/// How to make clients trust the development CA, for logs and the CLI.
pub fn trust_instructions(paths: &DevCertPaths, url: &str) -> String {
    let ca = paths.ca_cert.display();
    format!(
        "development CA: {ca} (keep {key} private). Trust it per command with \
         `curl --cacert {ca} {url}`; system-wide on Debian/Ubuntu: \
         `sudo cp {ca} /usr/local/share/ca-certificates/portico-dev-ca.crt && sudo update-ca-certificates`; \
         on macOS: `sudo security add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain {ca}`",
        key = paths.ca_key.display(),
    )
}

/// True when this listener should serve a generated certificate: `self_signed` is set and
/// no configured file exists, or the only existing pair is a leaf of our development CA
/// (so it is renewed like any other development certificate).
pub(crate) fn wants_dev_cert(tls: &ListenerTls, base_dir: &Path) -> bool {
    if tls.self_signed.is_empty() {
        return false;
    }
    let absent = |p: &Path| !base_dir.join(p).exists();
    let rest_absent = tls
        .certificates
        .iter()
        .skip(1)
        .all(|pair| absent(&pair.cert) && absent(&pair.key));
    let first_ours = match tls.certificates.first() {
        None => true,
        Some(pair) if absent(&pair.cert) && absent(&pair.key) => true,
        Some(_) => {
            let paths = dev_cert_paths_in(tls, base_dir);
            issued_by(&paths.cert, &paths.ca_cert)
        }
    };
    rest_absent && first_ours
}

fn issued_by(leaf: &Path, ca: &Path) -> bool {
    let (Ok(leaf), Ok(ca)) = (load_certs("certificate", leaf), load_certs("CA", ca)) else {
        return false;
    };
    match (
        x509_parser::parse_x509_certificate(&leaf[0]),
        x509_parser::parse_x509_certificate(&ca[0]),
    ) {
        (Ok((_, leaf)), Ok((_, ca))) => leaf.issuer().as_raw() == ca.subject().as_raw(),
        _ => false,
    }
}

/// Makes sure the CA and a current leaf exist, and says how to trust the CA.
pub(crate) fn ensure_dev_cert(
    tls: &ListenerTls,
    base_dir: &Path,
    listener: &str,
) -> Result<DevCertPaths, TlsError> {
    let paths = dev_cert_paths_in(tls, base_dir);
    let provider = crypto_provider();
    let now = unix_now();
    let names = leaf_names(&tls.self_signed);
    let (issuer, ca_der, ca_created) = load_or_create_ca(&paths, &provider, now)?;

    let reason = if ca_created {
        Some("a new development CA was created".to_owned())
    } else {
        check_leaf(&paths, &ca_der, &names, &provider, now).err()
    };
    if let Some(reason) = reason {
        let (leaf, cert_pem, key_pem) = issue_leaf(&paths, &issuer, &names, now)?;
        // A CA file replaced by hand cannot sign for us: refuse rather than serve a leaf
        // no client can verify.
        verify_leaf(&leaf, &ca_der, &names, &provider, now).map_err(|source| {
            TlsError::ForeignDevCa {
                path: paths.ca_cert.clone(),
                source: Box::new(source),
            }
        })?;
        write_file(&paths.key, &key_pem, true)?;
        write_file(&paths.cert, &cert_pem, false)?;
        tracing::info!(
            listener,
            cert = %paths.cert.display(),
            names = ?names,
            "generated development certificate ({reason})"
        );
    }
    let host = names
        .first()
        .map(|n| match n.parse::<std::net::Ipv6Addr>() {
            Ok(_) => format!("[{n}]"),
            Err(_) => n.clone(),
        })
        .unwrap_or_else(|| "localhost".to_owned());
    tracing::info!(
        listener,
        "{}",
        trust_instructions(&paths, &format!("https://{host}:<port>/"))
    );
    Ok(paths)
}

/// The configured names, de-duplicated, plus the loopback addresses when "localhost" is
/// among them so `https://127.0.0.1` verifies too.
fn leaf_names(self_signed: &[String]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let mut push = |name: String| {
        if !names.iter().any(|n| n.eq_ignore_ascii_case(&name)) {
            names.push(name);
        }
    };
    for name in self_signed {
        let name = name.trim().trim_end_matches('.');
        if !name.is_empty() {
            push(name.to_owned());
        }
    }
    if self_signed
        .iter()
        .any(|n| n.trim().eq_ignore_ascii_case("localhost"))
    {
        push("127.0.0.1".to_owned());
        push("::1".to_owned());
    }
    names
}

fn set_validity(
    params: &mut CertificateParams,
    path: &Path,
    from: i64,
    until: i64,
) -> Result<(), TlsError> {
    let time = |secs| {
        ASN1Time::from_timestamp(secs).map_err(|_| TlsError::BadCertificate {
            path: path.to_path_buf(),
            source: X509Error::InvalidDate,
        })
    };
    params.not_before = time(from)?.to_datetime();
    params.not_after = time(until)?.to_datetime();
    Ok(())
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_COMMON_NAME);
    dn.push(DnType::OrganizationName, ORGANIZATION);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

type LoadedCa = (Issuer<'static, KeyPair>, CertificateDer<'static>, bool);

/// Reuses the CA on disk when it is whole and outlives a fresh leaf; creates one otherwise.
/// The bool is true when the CA was just created.
fn load_or_create_ca(
    paths: &DevCertPaths,
    provider: &CryptoProvider,
    now: i64,
) -> Result<LoadedCa, TlsError> {
    if paths.ca_cert.exists() && paths.ca_key.exists() {
        let chain = load_certs("development CA certificate", &paths.ca_cert)?;
        let key_der = load_key(&paths.ca_key)?;
        let info = inspect(&paths.ca_cert, &chain[0])?;
        let ca_der = chain[0].clone();
        if info.not_before <= now && info.not_after - now > LEAF_VALIDITY_SECS {
            CertifiedKey::from_der(vec![ca_der.clone()], key_der.clone_key(), provider).map_err(
                |source| TlsError::KeyMismatch {
                    cert: paths.ca_cert.clone(),
                    key: paths.ca_key.clone(),
                    source: Box::new(source),
                },
            )?;
            let key = KeyPair::try_from(&key_der).map_err(|source| TlsError::Generate {
                path: paths.ca_key.clone(),
                source,
            })?;
            return Ok((Issuer::new(ca_params(), key), ca_der, false));
        }
        tracing::warn!(
            ca = %paths.ca_cert.display(),
            not_after = %format_date(info.not_after),
            "development CA is expiring or not yet valid; creating a new one (trust it again)"
        );
    }

    let generate = |source| TlsError::Generate {
        path: paths.ca_cert.clone(),
        source,
    };
    let mut params = ca_params();
    set_validity(
        &mut params,
        &paths.ca_cert,
        now - BACKDATE_SECS,
        now + CA_VALIDITY_SECS,
    )?;
    let key = KeyPair::generate().map_err(generate)?;
    let cert = params.self_signed(&key).map_err(generate)?;
    write_file(&paths.ca_key, &key.serialize_pem(), true)?;
    write_file(&paths.ca_cert, &cert.pem(), false)?;
    tracing::info!(ca = %paths.ca_cert.display(), "created development CA");
    Ok((Issuer::new(params, key), cert.der().clone(), true))
}

/// A fresh leaf (DER, cert PEM, key PEM) for `names`, signed by the development CA.
fn issue_leaf(
    paths: &DevCertPaths,
    issuer: &Issuer<'static, KeyPair>,
    names: &[String],
    now: i64,
) -> Result<(CertificateDer<'static>, String, String), TlsError> {
    let generate = |source| TlsError::Generate {
        path: paths.cert.clone(),
        source,
    };
    let mut params = CertificateParams::new(names.to_vec()).map_err(generate)?;
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        names.first().map_or("localhost", String::as_str),
    );
    dn.push(DnType::OrganizationName, ORGANIZATION);
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    set_validity(
        &mut params,
        &paths.cert,
        now - BACKDATE_SECS,
        now + LEAF_VALIDITY_SECS,
    )?;
    let key = KeyPair::generate().map_err(generate)?;
    let cert = params.signed_by(&key, issuer).map_err(generate)?;
    Ok((cert.der().clone(), cert.pem(), key.serialize_pem()))
}

/// Why the leaf on disk must be replaced, if it must.
fn check_leaf(
    paths: &DevCertPaths,
    ca_der: &CertificateDer<'static>,
    names: &[String],
    provider: &Arc<CryptoProvider>,
    now: i64,
) -> Result<(), String> {
    if !paths.cert.exists() || !paths.key.exists() {
        return Err("no certificate yet".to_owned());
    }
    let chain = load_certs("certificate", &paths.cert).map_err(|e| e.to_string())?;
    let key = load_key(&paths.key).map_err(|e| e.to_string())?;
    CertifiedKey::from_der(chain.clone(), key, provider).map_err(|e| e.to_string())?;
    let info = inspect(&paths.cert, &chain[0]).map_err(|e| e.to_string())?;
    if info.not_after - now < LEAF_RENEW_SECS {
        return Err(format!(
            "the old one expires {}",
            format_date(info.not_after)
        ));
    }
    verify_leaf(&chain[0], ca_der, names, provider, now)
        .map_err(|e| format!("the old one does not verify for {names:?}: {e}"))
}

/// Verifies `leaf` against `ca` for every name, as a client would.
fn verify_leaf(
    leaf: &CertificateDer<'_>,
    ca: &CertificateDer<'static>,
    names: &[String],
    provider: &Arc<CryptoProvider>,
    now: i64,
) -> Result<(), rustls::Error> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone())?;
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))?;
    let at = UnixTime::since_unix_epoch(Duration::from_secs(u64::try_from(now).unwrap_or(0)));
    for name in names {
        let Ok(server_name) = ServerName::try_from(name.as_str()) else {
            continue;
        };
        verifier.verify_server_cert(leaf, &[], &server_name, &[], at)?;
    }
    Ok(())
}

/// Writes through a temporary file and a rename so readers never see half a key; private
/// files are created with mode 0600.
fn write_file(path: &Path, contents: &str, private: bool) -> Result<(), TlsError> {
    let err = |source| TlsError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(err)?;
    }
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    // A leftover temporary file would keep its old mode: start from scratch.
    let _ = fs::remove_file(&tmp);
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if private { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options.open(&tmp).map_err(err)?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(err)?;
    fs::rename(&tmp, path).map_err(err)
}

#[cfg(test)]
mod tests;
