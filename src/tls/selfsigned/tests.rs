//! Tests for the development certificates: creation and reuse, renewal, a foreign CA left
//! alone, and the trust instructions.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::config::model::CertPair;
use crate::tls::test_support;

fn tls(certificates: Vec<CertPair>, names: &[&str]) -> ListenerTls {
    ListenerTls {
        certificates,
        self_signed: names.iter().map(|s| s.to_string()).collect(),
        strict_sni_host: true,
        handshake_timeout: Duration::from_secs(10),
    }
}

fn read(path: &Path) -> Vec<u8> {
    fs::read(path).unwrap()
}

fn leaf_not_after(path: &Path) -> i64 {
    let chain = load_certs("certificate", path).unwrap();
    inspect(path, &chain[0]).unwrap().not_after
}

#[test]
fn creates_ca_and_leaf_then_reuses_both() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tls(vec![], &["localhost"]);
    assert!(wants_dev_cert(&cfg, dir.path()));
    let paths = ensure_dev_cert(&cfg, dir.path(), "dev").unwrap();
    for file in [&paths.cert, &paths.key, &paths.ca_cert, &paths.ca_key] {
        assert!(file.starts_with(dir.path().join("certs")), "{file:?}");
        assert!(file.exists(), "{file:?}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for key in [&paths.key, &paths.ca_key] {
            let mode = fs::metadata(key).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{key:?}");
        }
    }
    let now = unix_now();
    let until = leaf_not_after(&paths.cert);
    assert!((until - now - LEAF_VALIDITY_SECS).abs() < 60);

    let (ca, leaf) = (read(&paths.ca_cert), read(&paths.cert));
    let again = ensure_dev_cert(&cfg, dir.path(), "dev").unwrap();
    assert_eq!(again, paths);
    assert_eq!(read(&paths.ca_cert), ca, "CA must be reused");
    assert_eq!(read(&paths.cert), leaf, "a current leaf must be reused");
    // An existing dev leaf keeps the listener in development mode.
    assert!(wants_dev_cert(&cfg, dir.path()));
}

#[test]
fn renews_a_leaf_near_expiry_or_with_new_names_but_keeps_the_ca() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tls(vec![], &["dev.test"]);
    let paths = ensure_dev_cert(&cfg, dir.path(), "dev").unwrap();
    let ca = read(&paths.ca_cert);
    let now = unix_now();

    let provider = crypto_provider();
    let (issuer, _, created) = load_or_create_ca(&paths, &provider, now).unwrap();
    assert!(!created);
    let names = leaf_names(&cfg.self_signed);
    let old_now = now - LEAF_VALIDITY_SECS + 3 * DAY;
    let (_, cert, key) = issue_leaf(&paths, &issuer, &names, old_now).unwrap();
    write_file(&paths.key, &key, true).unwrap();
    write_file(&paths.cert, &cert, false).unwrap();
    assert!(leaf_not_after(&paths.cert) < now + 4 * DAY);

    ensure_dev_cert(&cfg, dir.path(), "dev").unwrap();
    assert!(leaf_not_after(&paths.cert) > now + 80 * DAY);
    assert_eq!(read(&paths.ca_cert), ca);

    let leaf = read(&paths.cert);
    let renamed = tls(vec![], &["dev.test", "other.test"]);
    ensure_dev_cert(&renamed, dir.path(), "dev").unwrap();
    assert_ne!(read(&paths.cert), leaf, "a new name needs a new leaf");
    let chain = load_certs("certificate", &paths.cert).unwrap();
    let info = inspect(&paths.cert, &chain[0]).unwrap();
    assert_eq!(info.names, vec!["dev.test", "other.test"]);
    assert_eq!(read(&paths.ca_cert), ca);
}

#[test]
fn absent_configured_files_receive_the_generated_pair() {
    let dir = tempfile::tempdir().unwrap();
    let pair = CertPair {
        cert: "site/site.pem".into(),
        key: "site/site.key".into(),
    };
    let cfg = tls(vec![pair], &["site.test"]);
    assert!(wants_dev_cert(&cfg, dir.path()));
    let paths = ensure_dev_cert(&cfg, dir.path(), "web").unwrap();
    assert_eq!(paths.cert, dir.path().join("site/site.pem"));
    assert_eq!(paths.ca_cert, dir.path().join("certs/portico-dev-ca.pem"));
    assert!(paths.cert.exists() && paths.key.exists());
    assert!(wants_dev_cert(&cfg, dir.path()));

    // A real certificate at the configured path is left alone.
    let other = test_support::ca("someone else");
    let (cert, key) =
        test_support::leaf(&other, &["site.test"], unix_now() - DAY, unix_now() + DAY);
    fs::write(&paths.cert, cert).unwrap();
    fs::write(&paths.key, key).unwrap();
    assert!(!wants_dev_cert(&cfg, dir.path()));
    assert!(!wants_dev_cert(&tls(vec![], &[]), dir.path()));
}

#[test]
fn a_foreign_ca_is_refused_not_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tls(vec![], &["dev.test"]);
    let paths = dev_cert_paths_in(&cfg, dir.path());
    let now = unix_now();
    // A well-formed CA with its key, but not the subject name Portico signs with.
    let mut params = ca_params();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, "not portico");
    set_validity(&mut params, &paths.ca_cert, now - DAY, now + 3650 * DAY).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap().pem();
    let key = key.serialize_pem();
    write_file(&paths.ca_cert, &cert, false).unwrap();
    write_file(&paths.ca_key, &key, true).unwrap();
    let err = ensure_dev_cert(&cfg, dir.path(), "dev").err().unwrap();
    assert!(matches!(err, TlsError::ForeignDevCa { .. }), "{err:?}");
    assert!(err.to_string().contains("portico-dev-ca.pem"), "{err}");
    assert_eq!(fs::read_to_string(&paths.ca_cert).unwrap(), cert);
    assert!(!paths.cert.exists());
}

#[test]
fn names_and_instructions() {
    let names = leaf_names(&["localhost".into(), "LOCALHOST".into(), "app.test.".into()]);
    assert_eq!(names, vec!["localhost", "app.test", "127.0.0.1", "::1"]);
    assert_eq!(leaf_names(&["app.test".into()]), vec!["app.test"]);

    let paths = dev_cert_paths(&tls(vec![], &["localhost"]));
    assert_eq!(paths.ca_cert, Path::new("certs/portico-dev-ca.pem"));
    let text = trust_instructions(&paths, "https://localhost:8443/");
    assert!(text.contains("curl --cacert certs/portico-dev-ca.pem https://localhost:8443/"));
    assert!(text.contains("certs/portico-dev-ca.key"));
}
