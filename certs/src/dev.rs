//! Development certificates: a throwaway CA with a server and a client certificate signed by it.
//!
//! Lets a FleetMQ TLS listener (optionally with client certificates) be tried out without an
//! external PKI. All keys are fresh ECDSA P-256 keys; certificates are valid from one day in the
//! past (tolerating clock skew) for [`VALIDITY_DAYS`] days. Private keys are written with mode
//! 0600 on unix. Existing files of the same names are overwritten. These certificates are for
//! development only: the CA key sits next to the certificates it signed.

use std::fs;
use std::io::{self, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, Ia5String, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

/// Common name of the generated CA.
pub const CA_COMMON_NAME: &str = "FleetMQ Development CA";
/// Validity of every generated certificate, in days (the CA/Browser Forum's former maximum).
pub const VALIDITY_DAYS: i64 = 825;

/// Why development certificates could not be generated.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Creating the directory or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    /// A host is neither an IP address nor a valid DNS name.
    #[error("invalid host {host:?}: not an IP address or DNS name")]
    InvalidHost { host: String },
    /// The server certificate needs at least one host name or address.
    #[error("at least one host is required for the server certificate")]
    NoHosts,
    /// The client certificate's common name is empty.
    #[error("the client certificate common name must not be empty")]
    EmptyClientCn,
    /// Key generation or signing failed.
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, Error>;

fn params(common_name: &str) -> CertificateParams {
    let now = OffsetDateTime::now_utc();
    let mut params = CertificateParams::default();
    params.not_before = now - Duration::days(1);
    params.not_after = now + Duration::days(VALIDITY_DAYS);
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "FleetMQ");
    name.push(DnType::CommonName, common_name);
    params.distinguished_name = name;
    params.use_authority_key_identifier_extension = true;
    params
}

fn san(host: &str) -> Result<SanType> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    let invalid = || Error::InvalidHost { host: host.to_owned() };
    rustls::pki_types::DnsName::try_from(host).map_err(|_| invalid())?;
    Ia5String::try_from(host).map(SanType::DnsName).map_err(|_| invalid())
}

/// Generates `ca.pem`, `ca.key`, `server.pem`, `server.key`, `client.pem` and `client.key` in
/// `out` (created if missing) and returns their paths in that order.
///
/// The server certificate carries `hosts` as subject alternative names (IP addresses as IP SANs,
/// everything else as DNS names) and the first host as its common name; the client certificate
/// has the common name `client_cn` and the client-authentication extended key usage.
pub fn generate_dev_certs(out: &Path, hosts: &[String], client_cn: &str) -> Result<Vec<PathBuf>> {
    let first_host = hosts.first().ok_or(Error::NoHosts)?;
    let sans = hosts.iter().map(|h| san(h)).collect::<Result<Vec<_>>>()?;
    if client_cn.is_empty() {
        return Err(Error::EmptyClientCn);
    }

    let ca_key = KeyPair::generate()?;
    let mut ca_params = params(CA_COMMON_NAME);
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let ca = ca_params.self_signed(&ca_key)?;

    let server_key = KeyPair::generate()?;
    let mut server_params = params(first_host);
    server_params.subject_alt_names = sans;
    server_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server = server_params.signed_by(&server_key, &ca, &ca_key)?;

    let client_key = KeyPair::generate()?;
    let mut client_params = params(client_cn);
    client_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client = client_params.signed_by(&client_key, &ca, &ca_key)?;

    fs::create_dir_all(out).map_err(|source| Error::Io { path: out.to_path_buf(), source })?;
    let files = [
        ("ca.pem", ca.pem(), false),
        ("ca.key", ca_key.serialize_pem(), true),
        ("server.pem", server.pem(), false),
        ("server.key", server_key.serialize_pem(), true),
        ("client.pem", client.pem(), false),
        ("client.key", client_key.serialize_pem(), true),
    ];
    let mut written = Vec::with_capacity(files.len());
    for (name, contents, private) in files {
        let path = out.join(name);
        write_file(&path, contents.as_bytes(), private).map_err(|source| Error::Io { path: path.clone(), source })?;
        written.push(path);
    }
    Ok(written)
}

/// Writes `bytes` to `path`, restricting an existing or new file to its owner when `private`.
fn write_file(path: &Path, bytes: &[u8], private: bool) -> io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        if private {
            options.mode(0o600);
            let file = options.open(path)?;
            file.set_permissions(fs::Permissions::from_mode(0o600))?;
            return write_all(file, bytes);
        }
    }
    #[cfg(not(unix))]
    let _ = private;
    write_all(options.open(path)?, bytes)
}

fn write_all(mut file: fs::File, bytes: &[u8]) -> io::Result<()> {
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(list: &[&str]) -> Vec<String> {
        list.iter().map(|h| (*h).to_owned()).collect()
    }

    #[test]
    fn writes_all_files_into_a_new_directory() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("nested").join("certs");
        let files = generate_dev_certs(&out, &hosts(&["localhost", "127.0.0.1"]), "dev-1").unwrap();
        let names: Vec<_> = files.iter().map(|p| p.file_name().unwrap().to_str().unwrap()).collect();
        let expected = ["ca.pem", "ca.key", "server.pem", "server.key", "client.pem", "client.key"];
        assert_eq!(names, expected);
        for path in &files {
            assert_eq!(path.parent(), Some(out.as_path()));
            let text = fs::read_to_string(path).unwrap();
            let label = if path.extension() == Some("pem".as_ref()) {
                "-----BEGIN CERTIFICATE-----"
            } else {
                "-----BEGIN PRIVATE KEY-----"
            };
            assert!(text.starts_with(label), "{}: {text}", path.display());
        }
    }

    #[cfg(unix)]
    #[test]
    fn private_keys_are_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("server.key"), "old").unwrap();
        fs::set_permissions(dir.path().join("server.key"), fs::Permissions::from_mode(0o644)).unwrap();
        for path in generate_dev_certs(dir.path(), &hosts(&["localhost"]), "c").unwrap() {
            let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            let key = path.extension() == Some("key".as_ref());
            assert_eq!(mode & 0o077 == 0, key, "{}: {mode:o}", path.display());
        }
    }

    #[test]
    fn certificates_carry_the_requested_names() {
        use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
        let dir = tempfile::tempdir().unwrap();
        let files = generate_dev_certs(dir.path(), &hosts(&["broker.local", "10.0.0.7", "::1"]), "sensor-42").unwrap();
        let der = |i: usize| {
            let pem = fs::read(&files[i]).unwrap();
            let mut reader = pem.as_slice();
            let cert = rustls_pemfile::certs(&mut reader).next().unwrap().unwrap();
            cert
        };
        let (ca, server, client) = (der(0), der(2), der(4));

        let (_, ca) = X509Certificate::from_der(&ca).unwrap();
        assert!(ca.is_ca());
        assert_eq!(crate::tls::peer_common_name(&[der(0)]).unwrap(), CA_COMMON_NAME);

        let (_, server) = X509Certificate::from_der(&server).unwrap();
        assert_eq!(server.issuer(), ca.subject());
        let sans = server.subject_alternative_name().unwrap().unwrap();
        let names: Vec<String> = sans
            .value
            .general_names
            .iter()
            .map(|n| match n {
                GeneralName::DNSName(d) => format!("dns:{d}"),
                GeneralName::IPAddress(ip) => format!("ip:{}", ip.len()),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(names, ["dns:broker.local", "ip:4", "ip:16"]);
        let validity = server.validity().time_to_expiration().unwrap();
        assert!(validity.whole_days() >= VALIDITY_DAYS - 1, "{validity}");

        let (_, client) = X509Certificate::from_der(&client).unwrap();
        assert!(!client.is_ca());
        let eku = client.extended_key_usage().unwrap().unwrap();
        assert!(eku.value.client_auth && !eku.value.server_auth);
        assert_eq!(crate::tls::peer_common_name(&[der(4)]).unwrap(), "sensor-42");
    }

    #[test]
    fn rejects_bad_input_before_writing() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        assert!(matches!(generate_dev_certs(&out, &[], "c"), Err(Error::NoHosts)));
        assert!(matches!(
            generate_dev_certs(&out, &hosts(&["localhost", "bad host"]), "c"),
            Err(Error::InvalidHost { host }) if host == "bad host"
        ));
        assert!(matches!(generate_dev_certs(&out, &hosts(&["localhost"]), ""), Err(Error::EmptyClientCn)));
        assert!(!out.exists());
    }

    #[test]
    fn unwritable_directory_error_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("a-file");
        fs::write(&blocker, "").unwrap();
        let err = generate_dev_certs(&blocker.join("sub"), &hosts(&["localhost"]), "c").unwrap_err();
        assert!(matches!(err, Error::Io { .. }));
        assert!(err.to_string().contains("a-file"), "{err}");
    }
}
