//! Test-only helpers shared by the TLS tests: a throwaway CA, leaves signed by it, and one
//! real loopback handshake between a rustls server and client.
#![allow(clippy::unwrap_used)]

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::crypto::CryptoProvider;
use rustls::{
    ClientConfig, HandshakeKind, ProtocolVersion, RootCertStore, ServerConfig,
    SupportedProtocolVersion,
};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::config::model::CertPair;

pub struct TestCa {
    pub issuer: Issuer<'static, KeyPair>,
    pub der: CertificateDer<'static>,
    pub pem: String,
}

pub fn ca(name: &str) -> TestCa {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    TestCa {
        der: cert.der().clone(),
        pem: cert.pem(),
        issuer: Issuer::new(params, key),
    }
}

/// A leaf for `names` signed by `ca`, valid from `from` to `until` (unix seconds).
pub fn leaf(ca: &TestCa, names: &[&str], from: i64, until: i64) -> (String, String) {
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let mut params = CertificateParams::new(names).unwrap();
    params.not_before = x509_parser::time::ASN1Time::from_timestamp(from)
        .unwrap()
        .to_datetime();
    params.not_after = x509_parser::time::ASN1Time::from_timestamp(until)
        .unwrap()
        .to_datetime();
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// Writes a leaf valid for a year into `dir` as `<stem>.pem` / `<stem>.key`.
pub fn write_leaf(dir: &Path, stem: &str, ca: &TestCa, names: &[&str]) -> CertPair {
    let now = crate::tls::unix_now();
    let (cert, key) = leaf(ca, names, now - 3600, now + 365 * 86_400);
    write_pair(dir, stem, &cert, &key)
}

pub fn write_pair(dir: &Path, stem: &str, cert: &str, key: &str) -> CertPair {
    let pair = CertPair {
        cert: dir.join(format!("{stem}.pem")),
        key: dir.join(format!("{stem}.key")),
    };
    std::fs::write(&pair.cert, cert).unwrap();
    std::fs::write(&pair.key, key).unwrap();
    pair
}

pub fn write_ca(dir: &Path, ca: &TestCa) -> PathBuf {
    let path = dir.join("ca.pem");
    std::fs::write(&path, &ca.pem).unwrap();
    path
}

/// A client trusting `roots` that speaks only `version` and offers `alpn`.
pub fn client(
    roots: &[CertificateDer<'static>],
    version: &'static SupportedProtocolVersion,
    alpn: &[&[u8]],
) -> ClientConfig {
    client_with(crate::tls::crypto_provider(), roots, version, alpn)
}

/// As [`client`], with the given provider (e.g. restricted cipher suites).
pub fn client_with(
    provider: Arc<CryptoProvider>,
    roots: &[CertificateDer<'static>],
    version: &'static SupportedProtocolVersion,
    alpn: &[&[u8]],
) -> ClientConfig {
    let mut store = RootCertStore::empty();
    for root in roots {
        store.add(root.clone()).unwrap();
    }
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(store)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

/// What the client saw after a completed handshake and a short read.
pub struct Outcome {
    pub version: ProtocolVersion,
    pub alpn: Option<Vec<u8>>,
    pub server_cert: CertificateDer<'static>,
    pub server_saw_client_cert: bool,
    pub resumed: bool,
    pub suite: rustls::CipherSuite,
}

/// One real handshake over loopback TCP; the server writes "ok" and closes.
pub async fn handshake(
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
    name: &str,
) -> io::Result<Outcome> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let acceptor = TlsAcceptor::from(server);
    let server_task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await?;
        let mut tls = acceptor.accept(tcp).await?;
        let saw = tls.get_ref().1.peer_certificates().is_some();
        tls.write_all(b"ok").await?;
        tls.shutdown().await?;
        Ok::<bool, io::Error>(saw)
    });
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(name.to_owned()).unwrap();
    let outcome = async {
        let mut tls = TlsConnector::from(client).connect(name, tcp).await?;
        // With TLS 1.3 a rejected client certificate only shows up on the first read.
        let mut body = Vec::new();
        tls.read_to_end(&mut body).await?;
        assert_eq!(body, b"ok");
        let conn = tls.get_ref().1;
        Ok::<_, io::Error>(Outcome {
            version: conn.protocol_version().unwrap(),
            alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
            server_cert: conn.peer_certificates().unwrap()[0].clone(),
            server_saw_client_cert: false,
            resumed: conn.handshake_kind() == Some(HandshakeKind::Resumed),
            suite: conn.negotiated_cipher_suite().unwrap().suite(),
        })
    }
    .await;
    match outcome {
        Ok(outcome) => Ok(Outcome {
            server_saw_client_cert: server_task.await.unwrap()?,
            ..outcome
        }),
        Err(e) => {
            server_task.abort();
            Err(e)
        }
    }
}
