//! TLS configuration errors and real in-process handshakes against generated development
//! certificates.

use super::*;
use crate::dev::generate_dev_certs;
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::{TlsAcceptor, TlsConnector};

struct Pki {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Pki {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let hosts = ["localhost".to_owned(), "127.0.0.1".to_owned()];
        generate_dev_certs(&root, &hosts, "sensor-42").unwrap();
        Pki { _dir: dir, root }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    fn options(&self, client_ca: bool) -> TlsOptions {
        TlsOptions {
            cert: self.path("server.pem"),
            key: self.path("server.key"),
            client_ca: client_ca.then(|| self.path("ca.pem")),
        }
    }

    fn client(&self, with_cert: bool, version: Version) -> ClientConfig {
        client_config(self, with_cert.then_some(self), version)
    }
}

type Version = &'static rustls::SupportedProtocolVersion;

/// A client trusting `trust`'s CA and presenting `identity`'s client certificate, if any.
fn client_config(trust: &Pki, identity: Option<&Pki>, version: Version) -> ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for ca in load_certs(&trust.path("ca.pem")).unwrap() {
        roots.add(ca).unwrap();
    }
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match identity {
        Some(id) => {
            let chain = load_certs(&id.path("client.pem")).unwrap();
            let key = load_key(&id.path("client.key")).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"mqtt".to_vec()];
    config
}

/// Outcome of one handshake: the server's view (peer CN, ALPN) or its error, and the client's.
struct Outcome {
    server: std::result::Result<(Option<String>, Option<Vec<u8>>), io::Error>,
    client_ok: bool,
}

async fn handshake(server: Arc<ServerConfig>, client: ClientConfig) -> Outcome {
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let acceptor = TlsAcceptor::from(server);
    let connector = TlsConnector::from(Arc::new(client));
    let name = ServerName::try_from("localhost").unwrap();
    let server_side = async move {
        let mut stream = acceptor.accept(server_io).await?;
        let mut buf = [0u8; 4];
        stream.read_exact(&mut buf).await?;
        assert_eq!(&buf, b"ping");
        stream.write_all(b"pong").await?;
        stream.flush().await?;
        let (_, conn) = stream.get_ref();
        let cn = conn.peer_certificates().and_then(peer_common_name);
        Ok((cn, conn.alpn_protocol().map(<[u8]>::to_vec)))
    };
    let client_side = async move {
        let mut stream = connector.connect(name, client_io).await?;
        stream.write_all(b"ping").await?;
        stream.flush().await?;
        let mut buf = [0u8; 4];
        stream.read_exact(&mut buf).await?;
        io::Result::Ok(buf == *b"pong")
    };
    let (server, client) = tokio::join!(server_side, client_side);
    Outcome { server, client_ok: client.unwrap_or(false) }
}

#[tokio::test]
async fn mutual_tls_with_client_certificate() {
    let pki = Pki::new();
    let config = server_config(&pki.options(true)).unwrap();
    assert_eq!(config.alpn_protocols, [b"mqtt".to_vec()]);
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let outcome = handshake(config.clone(), pki.client(true, version)).await;
        let (cn, alpn) = outcome.server.unwrap();
        assert_eq!(cn.as_deref(), Some("sensor-42"));
        assert_eq!(alpn.as_deref(), Some(&b"mqtt"[..]));
        assert!(outcome.client_ok);
    }
}

#[tokio::test]
async fn client_ca_requires_a_client_certificate() {
    let pki = Pki::new();
    let config = server_config(&pki.options(true)).unwrap();
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let outcome = handshake(config.clone(), pki.client(false, version)).await;
        let err = outcome.server.unwrap_err();
        assert!(err.to_string().contains("no certificates"), "{err}");
        assert!(!outcome.client_ok);
    }
}

#[tokio::test]
async fn client_certificate_from_another_ca_is_rejected() {
    let trusted = Pki::new();
    let other = Pki::new();
    let config = server_config(&trusted.options(true)).unwrap();
    let client = client_config(&trusted, Some(&other), &rustls::version::TLS13);
    let outcome = handshake(config, client).await;
    let err = outcome.server.unwrap_err();
    assert!(err.to_string().contains("invalid peer certificate"), "{err}");
    assert!(!outcome.client_ok);
}

#[tokio::test]
async fn without_client_ca_no_certificate_is_needed() {
    let pki = Pki::new();
    let config = server_config(&pki.options(false)).unwrap();
    let outcome = handshake(config, pki.client(false, &rustls::version::TLS13)).await;
    let (cn, alpn) = outcome.server.unwrap();
    assert_eq!(cn, None);
    assert_eq!(alpn.as_deref(), Some(&b"mqtt"[..]));
    assert!(outcome.client_ok);
}

fn error_of(opts: &TlsOptions) -> Error {
    match server_config(opts) {
        Ok(_) => panic!("expected an error for {opts:?}"),
        Err(e) => e,
    }
}

#[test]
fn file_errors_name_the_file() {
    let pki = Pki::new();
    let garbage = pki.path("garbage.pem");
    std::fs::write(&garbage, "not PEM at all\n").unwrap();
    let shown = |e: Error, path: &Path| {
        let text = e.to_string();
        assert!(text.contains(&path.display().to_string()), "{text}");
        e
    };

    let missing = pki.path("absent.pem");
    let opts = TlsOptions { cert: missing.clone(), ..pki.options(false) };
    assert!(matches!(shown(error_of(&opts), &missing), Error::Io { .. }));

    let opts = TlsOptions { cert: garbage.clone(), ..pki.options(false) };
    assert!(matches!(shown(error_of(&opts), &garbage), Error::NoCertificate { .. }));

    let opts = TlsOptions { key: pki.path("server.pem"), ..pki.options(false) };
    let e = shown(error_of(&opts), &pki.path("server.pem"));
    assert!(matches!(e, Error::NoPrivateKey { .. }), "{e:?}");

    let opts = TlsOptions { key: pki.path("client.key"), ..pki.options(false) };
    let e = shown(error_of(&opts), &pki.path("client.key"));
    assert!(matches!(e, Error::KeyMismatch { .. }), "{e:?}");
    assert!(e.to_string().contains("server.pem"));

    let bad_key = pki.path("bad.key");
    std::fs::write(&bad_key, "-----BEGIN PRIVATE KEY-----\nAAECAwQF\n-----END PRIVATE KEY-----\n").unwrap();
    let opts = TlsOptions { key: bad_key.clone(), ..pki.options(false) };
    let e = shown(error_of(&opts), &bad_key);
    assert!(matches!(e, Error::InvalidKey { .. }), "{e:?}");

    let opts = TlsOptions { client_ca: Some(missing.clone()), ..pki.options(false) };
    assert!(matches!(shown(error_of(&opts), &missing), Error::Io { .. }));

    let opts = TlsOptions { client_ca: Some(garbage.clone()), ..pki.options(false) };
    assert!(matches!(shown(error_of(&opts), &garbage), Error::NoCertificate { .. }));
}

#[test]
fn common_name_edge_cases() {
    assert_eq!(peer_common_name(&[]), None);
    assert_eq!(peer_common_name(&[CertificateDer::from(vec![0x30, 0x03, 1, 2, 3])]), None);
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(rcgen::DnType::OrganizationName, "FleetMQ");
    let key = rcgen::KeyPair::generate().unwrap();
    let no_cn = params.self_signed(&key).unwrap();
    assert_eq!(peer_common_name(&[no_cn.der().clone()]), None);
}
