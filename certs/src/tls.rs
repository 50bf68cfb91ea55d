//! TLS for FleetMQ listeners and internal links: building rustls server and client configurations
//! from PEM files and reading the identity of a verified client certificate.
//!
//! Invariants: the configuration always uses the ring crypto provider, offers TLS 1.3 and 1.2 and
//! advertises the ALPN protocol `mqtt`. When a client CA is configured, every client must present a
//! certificate chaining to it (verified by webpki); otherwise client certificates are not requested.
//! Every file error names the file it concerns.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// ALPN protocol identifier advertised by FleetMQ TLS listeners.
pub const ALPN_MQTT: &[u8] = b"mqtt";

/// The PEM files a TLS listener is configured with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsOptions {
    /// Server certificate chain, leaf first.
    pub cert: PathBuf,
    /// Private key of the leaf certificate (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// CA certificates that client certificates must chain to; `None` disables client
    /// certificate authentication.
    pub client_ca: Option<PathBuf>,
}

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    /// The file is not valid PEM.
    #[error("{}: invalid PEM: {source}", path.display())]
    Pem { path: PathBuf, source: io::Error },
    /// The file holds no PEM certificate.
    #[error("{}: no certificate found", path.display())]
    NoCertificate { path: PathBuf },
    /// The file holds no PEM private key.
    #[error("{}: no private key found", path.display())]
    NoPrivateKey { path: PathBuf },
    /// The private key could not be used.
    #[error("{}: invalid private key: {reason}", path.display())]
    InvalidKey { path: PathBuf, reason: String },
    /// The server certificate could not be parsed.
    #[error("{}: invalid certificate: {reason}", path.display())]
    InvalidCertificate { path: PathBuf, reason: String },
    /// The private key does not belong to the leaf certificate.
    #[error("{}: private key does not match the certificate {}", key.display(), cert.display())]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    /// The client CA file holds a certificate that cannot serve as a trust anchor.
    #[error("{}: invalid client CA: {reason}", path.display())]
    InvalidCa { path: PathBuf, reason: String },
    /// The name to verify a peer's certificate against is not a DNS name or IP address.
    #[error("invalid server name {name:?}")]
    InvalidServerName { name: String },
    /// rustls rejected the configuration for another reason.
    #[error("TLS configuration failed: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, Error>;

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })
}

/// Every certificate in the PEM file at `path`; at least one.
fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let pem = read(path)?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<io::Result<Vec<_>>>()
        .map_err(|source| Error::Pem { path: path.to_path_buf(), source })?;
    if certs.is_empty() {
        return Err(Error::NoCertificate { path: path.to_path_buf() });
    }
    Ok(certs)
}

/// The first private key in the PEM file at `path`.
fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    let pem = read(path)?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|source| Error::Pem { path: path.to_path_buf(), source })?
        .ok_or_else(|| Error::NoPrivateKey { path: path.to_path_buf() })
}

/// Builds the rustls server configuration for a TLS listener.
///
/// Clients that offer ALPN must include `mqtt` (rustls refuses a handshake in which the client
/// offers ALPN protocols and none matches); clients that offer no ALPN are accepted.
pub fn server_config(opts: &TlsOptions) -> Result<Arc<ServerConfig>> {
    let certs = load_certs(&opts.cert)?;
    let key = load_key(&opts.key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
    let builder = match &opts.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca_path) => {
            let invalid = |reason: String| Error::InvalidCa { path: ca_path.clone(), reason };
            let mut roots = RootCertStore::empty();
            for ca in load_certs(ca_path)? {
                roots.add(ca).map_err(|e| invalid(e.to_string()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| invalid(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| match e {
        rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
            Error::KeyMismatch { cert: opts.cert.clone(), key: opts.key.clone() }
        }
        rustls::Error::InvalidCertificate(reason) => {
            Error::InvalidCertificate { path: opts.cert.clone(), reason: format!("{reason:?}") }
        }
        rustls::Error::General(reason) => Error::InvalidKey { path: opts.key.clone(), reason },
        other => Error::Rustls(other),
    })?;
    config.alpn_protocols = vec![ALPN_MQTT.to_vec()];
    Ok(Arc::new(config))
}

/// Builds a rustls client configuration that presents `cert`/`key` as its client certificate and
/// trusts only the CAs in `ca` (internal links between nodes: mutual TLS with a private CA).
pub fn client_config(cert: &Path, key: &Path, ca: &Path) -> Result<Arc<ClientConfig>> {
    let certs = load_certs(cert)?;
    let private = load_key(key)?;
    let mut roots = RootCertStore::empty();
    for c in load_certs(ca)? {
        roots.add(c).map_err(|e| Error::InvalidCa { path: ca.to_path_buf(), reason: e.to_string() })?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, private)
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
                Error::KeyMismatch { cert: cert.to_path_buf(), key: key.to_path_buf() }
            }
            rustls::Error::General(reason) => Error::InvalidKey { path: key.to_path_buf(), reason },
            other => Error::Rustls(other),
        })?;
    Ok(Arc::new(config))
}

/// The subject common name of the leaf (first) certificate of a peer's chain.
///
/// Used to take the MQTT username from a verified client certificate. Returns `None` when the
/// chain is empty, the certificate does not parse, or the subject has no common name, more than
/// one, or an empty or non-string one, so an ambiguous identity is never used.
pub fn peer_common_name(certs: &[CertificateDer]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(certs.first()?).ok()?;
    let mut names = cert.subject().iter_common_name();
    let name = names.next()?.as_str().ok()?;
    if names.next().is_some() || name.is_empty() {
        return None;
    }
    Some(name.to_owned())
}

#[cfg(test)]
mod tests;
