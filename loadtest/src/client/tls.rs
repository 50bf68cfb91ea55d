//! TLS client configuration shared by the rumqttc clients and the raw connect client.
//!
//! Uses the rustls version rumqttc itself links (re-exported as `rumqttc::tokio_rustls::rustls`), so
//! one `ClientConfig` serves both. Invariants: roots come from `--ca` when given, else from the
//! system store; `--insecure` replaces verification entirely (handshake signatures are still
//! checked so the session keys are real, but any certificate and name is accepted).

use super::{Error, Result};
use crate::scenario::Connection;
use rumqttc::tokio_rustls::rustls;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::path::Path;
use std::sync::Arc;

/// Builds the TLS configuration for `conn`, or `None` when TLS is off.
pub fn client_config(conn: &Connection) -> Result<Option<Arc<ClientConfig>>> {
    if !conn.tls {
        return Ok(None);
    }
    let builder = if conn.insecure {
        let algs = rustls::crypto::ring::default_provider().signature_verification_algorithms;
        ClientConfig::builder().dangerous().with_custom_certificate_verifier(Arc::new(AcceptAnyCert { algs }))
    } else {
        let mut roots = RootCertStore::empty();
        match &conn.ca {
            Some(ca) => {
                for cert in read_certs(ca)? {
                    roots.add(cert).map_err(|e| Error::Tls(format!("{}: bad CA certificate: {e}", ca.display())))?;
                }
            }
            None => {
                let native = rustls_native_certs::load_native_certs()
                    .map_err(|e| Error::Tls(format!("cannot load system root certificates: {e}")))?;
                let _ = roots.add_parsable_certificates(native);
            }
        }
        if roots.is_empty() {
            return Err(Error::Tls("no trusted root certificate (pass --ca FILE or --insecure)".into()));
        }
        ClientConfig::builder().with_root_certificates(roots)
    };
    let config = match (&conn.cert, &conn.key) {
        (Some(cert), Some(key)) => builder
            .with_client_auth_cert(read_certs(cert)?, read_key(key)?)
            .map_err(|e| Error::Tls(format!("client certificate {}: {e}", cert.display())))?,
        _ => builder.with_no_client_auth(),
    };
    Ok(Some(Arc::new(config)))
}

/// The name the broker's certificate must match: the host as an IP or DNS name.
pub fn server_name(host: &str) -> Result<ServerName<'static>> {
    ServerName::try_from(host.to_string()).map_err(|e| Error::Tls(format!("{host:?} is not a valid server name: {e}")))
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let data = std::fs::read(path).map_err(|e| Error::Tls(format!("cannot read {}: {e}", path.display())))?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut data.as_slice())
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::Tls(format!("{}: bad PEM: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(Error::Tls(format!("{}: no certificate found", path.display())));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    let data = std::fs::read(path).map_err(|e| Error::Tls(format!("cannot read {}: {e}", path.display())))?;
    rustls_pemfile::private_key(&mut data.as_slice())
        .map_err(|e| Error::Tls(format!("{}: bad PEM: {e}", path.display())))?
        .ok_or_else(|| Error::Tls(format!("{}: no private key found", path.display())))
}

/// Accepts any server certificate (for `--insecure` against development brokers).
#[derive(Debug)]
struct AcceptAnyCert {
    algs: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}
