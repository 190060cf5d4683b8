//! Per-run test PKI: one CA, leaf certificates for chosen SANs written as PEM into a tempdir,
//! and rustls configs that trust the CA.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// A leaf certificate on disk, plus its DER for comparing with what a peer presented.
#[derive(Debug, Clone)]
pub struct Leaf {
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    pub der: CertificateDer<'static>,
    pub key_pem: String,
    pub cert_pem: String,
}

impl Leaf {
    /// A rustls server config presenting this certificate with the given ALPN protocols.
    pub fn server_config(&self, alpn: &[&[u8]]) -> Arc<ServerConfig> {
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).expect("leaf key PEM");
        let mut config = ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![self.der.clone()], key)
            .expect("server config from leaf");
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }
}

/// A certificate authority created for one test; files live as long as this value.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    ca_der: CertificateDer<'static>,
    ca_path: PathBuf,
    dir: tempfile::TempDir,
}

impl TestCa {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir for certificates");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "Portico Test CA");
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("self-signed CA");
        let ca_path = dir.path().join("ca.pem");
        std::fs::write(&ca_path, cert.pem()).expect("write CA PEM");
        let ca_der = cert.der().clone();
        TestCa {
            issuer: Issuer::new(params, key),
            ca_der,
            ca_path,
            dir,
        }
    }

    /// Issues a leaf for `sans` (DNS names or IP literals) and writes `<name>.pem`/`<name>.key`.
    pub fn leaf(&self, name: &str, sans: &[&str]) -> Leaf {
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(sans.clone()).expect("leaf params");
        if let Some(first) = sans.first() {
            params
                .distinguished_name
                .push(DnType::CommonName, first.as_str());
        }
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign leaf");
        let cert_path = self.dir.path().join(format!("{name}.pem"));
        let key_path = self.dir.path().join(format!("{name}.key"));
        std::fs::write(&cert_path, cert.pem()).expect("write leaf cert");
        std::fs::write(&key_path, key.serialize_pem()).expect("write leaf key");
        Leaf {
            cert_path,
            key_path,
            der: cert.der().clone(),
            key_pem: key.serialize_pem(),
            cert_pem: cert.pem(),
        }
    }

    /// The CA certificate as a PEM file (for `upstreams.*.tls.ca`).
    pub fn ca_path(&self) -> &Path {
        &self.ca_path
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca_der.clone()).expect("add CA to roots");
        roots
    }

    /// A client config trusting only this CA, offering `alpn`.
    pub fn client_config(&self, alpn: &[&[u8]]) -> Arc<ClientConfig> {
        let mut config = ClientConfig::builder()
            .with_root_certificates(self.roots())
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }

    /// The leaf certificate `addr` presents for SNI `name` on a new TLS connection.
    pub async fn peer_certificate(
        &self,
        addr: std::net::SocketAddr,
        name: &str,
    ) -> CertificateDer<'static> {
        let connector = tokio_rustls::TlsConnector::from(self.client_config(&[b"http/1.1"]));
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let server_name = rustls::pki_types::ServerName::try_from(name.to_owned()).expect("name");
        let tls = connector
            .connect(server_name, tcp)
            .await
            .expect("TLS handshake");
        tls.get_ref().1.peer_certificates().expect("a certificate")[0].clone()
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}
