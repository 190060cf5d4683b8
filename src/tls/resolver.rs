//! Lock-free SNI certificate selection: immutable maps from exact names and wildcard
//! parents to certificates, built once per configuration and shared through an `Arc`.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// Which certificate covers which host name. Cheap to clone; never locked.
#[derive(Clone, Debug)]
pub struct SniIndex {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// In config order; index 0 is the default certificate.
    certs: Vec<Arc<CertifiedKey>>,
    /// Exact SAN (lower-case) -> certificate index.
    exact: HashMap<String, usize>,
    /// `*.example.com` stored as `example.com` -> certificate index.
    wildcard: HashMap<String, usize>,
}

impl SniIndex {
    /// Indexes certificates with their lower-case SAN names. When several certificates claim
    /// the same name, the earliest wins, so config order decides.
    pub(crate) fn new(entries: Vec<(Arc<CertifiedKey>, Vec<String>)>) -> Self {
        let mut certs = Vec::with_capacity(entries.len());
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        for (index, (cert, names)) in entries.into_iter().enumerate() {
            certs.push(cert);
            for name in names {
                if let Some(parent) = name.strip_prefix("*.") {
                    if !parent.is_empty() && !parent.contains('*') {
                        wildcard.entry(parent.to_owned()).or_insert(index);
                    }
                } else if !name.contains('*') {
                    exact.entry(name).or_insert(index);
                }
            }
        }
        SniIndex {
            inner: Arc::new(Inner {
                certs,
                exact,
                wildcard,
            }),
        }
    }

    /// Index of the certificate covering `host` (no port): an exact SAN first, then a
    /// wildcard covering exactly one extra label. `None` when no certificate covers it.
    pub fn cert_for(&self, host: &str) -> Option<usize> {
        let host = host.strip_suffix('.').unwrap_or(host);
        let host: Cow<'_, str> = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(host.to_ascii_lowercase())
        } else {
            Cow::Borrowed(host)
        };
        if let Some(&index) = self.inner.exact.get(host.as_ref()) {
            return Some(index);
        }
        let (label, parent) = host.split_once('.')?;
        if label.is_empty() {
            return None;
        }
        self.inner.wildcard.get(parent).copied()
    }

    /// Number of certificates.
    pub fn len(&self) -> usize {
        self.inner.certs.len()
    }

    /// True when there is no certificate (never the case for a built listener).
    pub fn is_empty(&self) -> bool {
        self.inner.certs.is_empty()
    }

    /// The certificate chain and key at `index`.
    pub fn certified_key(&self, index: usize) -> Option<&Arc<CertifiedKey>> {
        self.inner.certs.get(index)
    }
}

impl ResolvesServerCert for SniIndex {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let index = client_hello
            .server_name()
            .and_then(|name| self.cert_for(name))
            .unwrap_or(0);
        self.inner.certs.get(index).cloned()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::tls::certs::{load_pair, unix_now};
    use crate::tls::crypto_provider;
    use crate::tls::test_support;

    fn index(sets: &[&[&str]]) -> SniIndex {
        let dir = tempfile::tempdir().unwrap();
        let ca = test_support::ca("resolver ca");
        let entries = sets
            .iter()
            .enumerate()
            .map(|(i, names)| {
                let pair = test_support::write_leaf(dir.path(), &format!("c{i}"), &ca, names);
                let loaded = load_pair(&pair, &crypto_provider(), unix_now()).unwrap();
                (loaded.certified, loaded.names)
            })
            .collect();
        SniIndex::new(entries)
    }

    #[test]
    fn exact_then_wildcard_then_none() {
        let sni = index(&[
            &["a.example.com", "example.com"],
            &["*.example.com", "b.example.org"],
            &["special.example.com"],
        ]);
        assert_eq!(sni.len(), 3);
        assert_eq!(sni.cert_for("a.example.com"), Some(0));
        assert_eq!(sni.cert_for("example.com"), Some(0));
        assert_eq!(sni.cert_for("x.example.com"), Some(1));
        assert_eq!(sni.cert_for("special.example.com"), Some(2));
        assert_eq!(sni.cert_for("b.example.org"), Some(1));
        assert_eq!(sni.cert_for("B.Example.ORG."), Some(1));
        assert_eq!(sni.cert_for("deep.x.example.com"), None);
        assert_eq!(sni.cert_for(".example.com"), None);
        assert_eq!(sni.cert_for("other.test"), None);
        assert_eq!(sni.cert_for(""), None);
    }

    #[test]
    fn earliest_certificate_wins_a_shared_name() {
        let sni = index(&[&["dup.test"], &["dup.test", "only.test"]]);
        assert_eq!(sni.cert_for("dup.test"), Some(0));
        assert_eq!(sni.cert_for("only.test"), Some(1));
    }

    #[test]
    fn clones_share_the_same_maps() {
        let sni = index(&[&["a.test"]]);
        let copy = sni.clone();
        assert!(Arc::ptr_eq(&sni.inner, &copy.inner));
        assert!(Arc::ptr_eq(
            sni.certified_key(0).unwrap(),
            copy.certified_key(0).unwrap()
        ));
    }
}
