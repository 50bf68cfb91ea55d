//! Argon2id password hashing and the in-memory form of a FleetMQ password file.
//!
//! A password file holds one `username:PHC-hash` entry per line; blank lines and lines whose first
//! non-blank character is `#` are ignored. Every hash is validated when the file is loaded, so a
//! loaded [`PasswordFile`] only holds parseable argon2id hashes with valid parameters. Verification
//! takes the parameters from each stored hash, so files written with other costs keep working.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::RngCore;

use super::{Error, Result};

/// Cost of new hashes as (memory KiB, iterations, lanes): the OWASP minimum for argon2id.
const BROKER_COST: (u32, u32, u32) = (19_456, 2, 1);
/// Unit tests hash many passwords; they use the cheapest cost argon2 accepts.
#[cfg(test)]
const TEST_COST: (u32, u32, u32) = (8, 1, 1);
/// Bytes of random salt in new hashes.
const SALT_LEN: usize = 16;

fn cost_params((m, t, p): (u32, u32, u32)) -> Result<Params> {
    Params::new(m, t, p, None).map_err(|e| Error::Hash(e.to_string()))
}

/// Parameters of new hashes.
fn new_hash_params() -> Result<Params> {
    #[cfg(not(test))]
    let cost = BROKER_COST;
    #[cfg(test)]
    let cost = TEST_COST;
    cost_params(cost)
}

/// Hashes `password` into an argon2id PHC string with a fresh random salt.
///
/// Slow by design (tens of milliseconds); call it from a blocking context.
pub fn hash_password(password: &[u8]) -> Result<String> {
    hash_with(new_hash_params()?, password)
}

fn hash_with(params: Params, password: &[u8]) -> Result<String> {
    let mut salt = [0u8; SALT_LEN];
    rand::rngs::OsRng.fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| Error::Hash(e.to_string()))?;
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password(password, &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| Error::Hash(e.to_string()))
}

/// The trimmed username and hash of an entry line, or `None` for blank and comment lines.
///
/// Shared with the file editing functions so that loading and editing agree on what a line is.
pub(super) fn parse_entry(line: &str) -> Option<std::result::Result<(&str, &str), &'static str>> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    Some(match line.split_once(':') {
        Some((user, _)) if user.trim().is_empty() => Err("empty username"),
        Some((user, hash)) => Ok((user.trim(), hash.trim())),
        None => Err("expected `username:hash`"),
    })
}

/// Checks that `phc` is an argon2id hash whose parameters argon2 accepts.
fn validate_hash(phc: &str) -> std::result::Result<Params, String> {
    let hash = PasswordHash::new(phc).map_err(|e| format!("invalid PHC string: {e}"))?;
    if hash.algorithm != Algorithm::Argon2id.ident() {
        return Err(format!("hash algorithm is {}, not argon2id", hash.algorithm));
    }
    if hash.salt.is_none() || hash.hash.is_none() {
        return Err("hash lacks a salt or an output".to_owned());
    }
    if let Some(version) = hash.version {
        Version::try_from(version).map_err(|e| format!("invalid argon2 version: {e}"))?;
    }
    Params::try_from(&hash).map_err(|e| format!("invalid argon2 parameters: {e}"))
}

/// The users and password hashes of a password file, loaded once and checked on every CONNECT.
pub struct PasswordFile {
    users: HashMap<String, String>,
    /// Hash of a random secret, verified for unknown users so that a failed login takes the same
    /// time whether or not the username exists.
    dummy: String,
}

impl std::fmt::Debug for PasswordFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordFile").field("users", &self.users.len()).finish()
    }
}

impl PasswordFile {
    /// Reads and validates the password file at `path`.
    ///
    /// Errors name the file, and for bad entries the line number: malformed lines, duplicate
    /// usernames and hashes that are not valid argon2id PHC strings are all rejected.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
        Self::from_text(path, &text)
    }

    fn from_text(path: &Path, text: &str) -> Result<Self> {
        let bad = |line: usize, reason: String| Error::Malformed { path: PathBuf::from(path), line, reason };
        let mut users = HashMap::new();
        let mut dummy_params = None;
        for (index, line) in text.lines().enumerate() {
            let number = index + 1;
            let (user, phc) = match parse_entry(line) {
                None => continue,
                Some(Ok(entry)) => entry,
                Some(Err(reason)) => return Err(bad(number, reason.to_owned())),
            };
            let params = validate_hash(phc).map_err(|reason| bad(number, reason))?;
            dummy_params.get_or_insert(params);
            if users.insert(user.to_owned(), phc.to_owned()).is_some() {
                return Err(bad(number, format!("duplicate user {user:?}")));
            }
        }
        let params = match dummy_params {
            Some(params) => params,
            None => new_hash_params()?,
        };
        let mut secret = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut secret);
        let dummy = hash_with(params, &secret)?;
        Ok(PasswordFile { users, dummy })
    }

    /// Whether `password` is the password of `username`.
    ///
    /// Argon2 verification is deliberately slow (tens of milliseconds with the default cost), so
    /// async callers must run this on a blocking thread (`tokio::task::spawn_blocking`). Unknown
    /// usernames still verify a hash, so response timing does not reveal which users exist.
    pub fn verify(&self, username: &str, password: &[u8]) -> bool {
        let (phc, known) = match self.users.get(username) {
            Some(phc) => (phc.as_str(), true),
            None => (self.dummy.as_str(), false),
        };
        let Ok(hash) = PasswordHash::new(phc) else {
            return false;
        };
        let matched = Argon2::default().verify_password(password, &hash).is_ok();
        matched && known
    }

    /// Number of users in the file.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether the file has no users (every login then fails).
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<PasswordFile> {
        PasswordFile::from_text(Path::new("/etc/fleetmq/passwd"), text)
    }

    fn malformed_line(err: Error) -> (usize, String) {
        match err {
            Error::Malformed { path, line, reason } => {
                assert_eq!(path, Path::new("/etc/fleetmq/passwd"));
                (line, reason)
            }
            other => panic!("expected a malformed-line error, got {other:?}"),
        }
    }

    #[test]
    fn hashes_are_salted_argon2id() {
        let a = hash_password(b"secret").unwrap();
        let b = hash_password(b"secret").unwrap();
        assert!(a.starts_with("$argon2id$v=19$"), "{a}");
        assert_ne!(a, b, "each hash has its own salt");
    }

    #[test]
    fn broker_cost_is_the_owasp_minimum() {
        let params = cost_params(BROKER_COST).unwrap();
        assert_eq!(params.m_cost(), 19_456);
        assert_eq!(params.t_cost(), 2);
        assert_eq!(params.p_cost(), 1);
        let phc = hash_password(b"pw").unwrap();
        assert!(phc.contains("$m=8,t=1,p=1$"), "tests use the cheap cost: {phc}");
    }

    #[test]
    fn verifies_known_users_only() {
        let text = format!(
            "# users\n\nalice:{}\r\n  bob : {}  \n",
            hash_password(b"alice-pw").unwrap(),
            hash_password(b"bob-pw").unwrap()
        );
        let file = parse(&text).unwrap();
        assert_eq!(file.len(), 2);
        assert!(file.verify("alice", b"alice-pw"));
        assert!(file.verify("bob", b"bob-pw"));
        assert!(!file.verify("alice", b"bob-pw"));
        assert!(!file.verify("alice", b""));
        assert!(!file.verify("carol", b"alice-pw"));
        assert!(!file.verify("", b""));
    }

    #[test]
    fn accepts_hashes_with_other_parameters() {
        let params = Params::new(16, 3, 2, Some(24)).unwrap();
        let phc = hash_with(params, b"pw").unwrap();
        assert!(phc.contains("m=16,t=3,p=2"), "{phc}");
        let file = parse(&format!("dev:{phc}")).unwrap();
        assert!(file.verify("dev", b"pw"));
        assert!(!file.verify("dev", b"pw2"));
    }

    #[test]
    fn rejects_malformed_lines_with_their_number() {
        let good = hash_password(b"pw").unwrap();
        let cases = [
            (format!("a:{good}\nno-colon-here\n"), 2),
            (format!("# c\n:{good}\n"), 2),
            ("a:\n".to_owned(), 1),
            ("a:not-a-phc-string\n".to_owned(), 1),
            ("\n\na:$argon2id$v=19$m=8,t=1,p=1\n".to_owned(), 3),
            ("a:$argon2id$v=19$m=1,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo\n".to_owned(), 1),
            ("a:$argon2i$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo\n".to_owned(), 1),
            ("a:$pbkdf2-sha256$i=1000$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo\n".to_owned(), 1),
            (format!("a:{good}\nb:{good}\na:{good}\n"), 3),
        ];
        for (text, line) in cases {
            let err = parse(&text).unwrap_err();
            let rendered = err.to_string();
            assert!(rendered.starts_with(&format!("/etc/fleetmq/passwd:{line}: ")), "{text:?} gave {rendered}");
            assert_eq!(malformed_line(err).0, line, "{text:?}");
        }
    }

    #[test]
    fn empty_file_rejects_everyone() {
        let file = parse("# nobody yet\n").unwrap();
        assert!(file.is_empty());
        assert!(!file.verify("alice", b""));
    }

    #[test]
    fn missing_file_error_names_the_path() {
        let path = Path::new("/nonexistent/fleetmq/passwd");
        let err = PasswordFile::load(path).unwrap_err();
        assert!(matches!(err, Error::Io { .. }));
        assert!(err.to_string().contains("/nonexistent/fleetmq/passwd"), "{err}");
    }
}
