//! Username/password authentication: the password file and the edits behind `fleetmq passwd`.
//!
//! The file format (`username:argon2id-PHC-hash` per line, `#` comments, blank lines) is read by
//! [`PasswordFile`]. Edits keep every other line, comments included, byte for byte and replace the
//! file atomically (temporary file in the same directory, then rename), so a broker reloading the
//! file never sees a half-written version. The file is written with mode 0600 on unix. Usernames
//! that could not be read back unchanged (`:`, control characters, leading `#`, surrounding
//! whitespace, empty) are refused.

mod password;

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use rand::RngCore;

pub use password::{hash_password, PasswordFile};

/// Why a password file could not be read, parsed or written.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing the file failed.
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    /// A line of the file is not a valid `username:argon2id-hash` entry.
    #[error("{}:{line}: {reason}", path.display())]
    Malformed { path: PathBuf, line: usize, reason: String },
    /// The username cannot be stored in a password file.
    #[error("invalid username {name:?}: {reason}")]
    InvalidUsername { name: String, reason: &'static str },
    /// Argon2 refused to hash (only on resource exhaustion or invalid parameters).
    #[error("password hashing failed: {0}")]
    Hash(String),
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, Error>;

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.to_path_buf(), source }
}

/// Refuses usernames that would not read back from the file as the same username.
fn check_username(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        Some("must not be empty")
    } else if name.contains(':') {
        Some("must not contain `:`")
    } else if name.chars().any(char::is_control) {
        Some("must not contain newlines or other control characters")
    } else if name.starts_with('#') {
        Some("must not start with `#`")
    } else if name.trim() != name {
        Some("must not start or end with whitespace")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(Error::InvalidUsername { name: name.to_owned(), reason }),
        None => Ok(()),
    }
}

/// The file's text, or an empty text when it does not exist yet.
fn read_or_empty(path: &Path) -> Result<String> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(text),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(io_error(path)(e)),
    }
}

fn is_entry_of(line: &str, username: &str) -> bool {
    matches!(password::parse_entry(line), Some(Ok((user, _))) if user == username)
}

/// Sets (adds or replaces) the password of `username` in the password file at `path`.
///
/// Creates the file if it is missing. The user's first entry is replaced in place and any later
/// duplicates are dropped; all other lines are kept. Hashing is slow; call from a blocking context.
pub fn set_password(path: &Path, username: &str, password: &[u8]) -> Result<()> {
    check_username(username)?;
    let text = read_or_empty(path)?;
    let entry = format!("{username}:{}", hash_password(password)?);
    let mut lines = Vec::new();
    let mut replaced = false;
    for line in text.lines() {
        if !is_entry_of(line, username) {
            lines.push(line);
        } else if !replaced {
            lines.push(&entry);
            replaced = true;
        }
    }
    if !replaced {
        lines.push(&entry);
    }
    write_atomically(path, &lines)
}

/// Removes every entry of `username` from the password file at `path`.
///
/// Returns whether the user was present; the file is left untouched (and not created) otherwise.
pub fn delete_user(path: &Path, username: &str) -> Result<bool> {
    check_username(username)?;
    let text = read_or_empty(path)?;
    let lines: Vec<&str> = text.lines().filter(|l| !is_entry_of(l, username)).collect();
    if lines.len() == text.lines().count() {
        return Ok(false);
    }
    write_atomically(path, &lines)?;
    Ok(true)
}

/// Writes `lines` to a fresh temporary file next to `path` (mode 0600), syncs it and renames it
/// over `path`.
fn write_atomically(path: &Path, lines: &[&str]) -> Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path.file_name().ok_or_else(|| io_error(path)(io::Error::other("not a file path")))?;
    let tmp = dir.join(format!(".{}.{:016x}.tmp", name.to_string_lossy(), rand::rngs::OsRng.next_u64()));
    let mut body = lines.join("\n");
    body.push('\n');
    let result = write_new_private(&tmp, body.as_bytes()).map_err(io_error(path)).and_then(|()| {
        fs::rename(&tmp, path).map_err(io_error(path))?;
        if let Ok(dir) = fs::File::open(dir) {
            // Persisting the rename is best effort: some platforms cannot sync directories.
            let _ = dir.sync_all();
        }
        Ok(())
    });
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn write_new_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("passwd");
        (dir, path)
    }

    #[test]
    fn set_replace_delete_roundtrip() {
        let (dir, path) = temp();
        set_password(&path, "alice", b"one").unwrap();
        set_password(&path, "bob", b"two").unwrap();
        let file = PasswordFile::load(&path).unwrap();
        assert_eq!(file.len(), 2);
        assert!(file.verify("alice", b"one"));
        assert!(file.verify("bob", b"two"));

        set_password(&path, "alice", b"three").unwrap();
        let file = PasswordFile::load(&path).unwrap();
        assert_eq!(file.len(), 2);
        assert!(!file.verify("alice", b"one"));
        assert!(file.verify("alice", b"three"));

        assert!(delete_user(&path, "alice").unwrap());
        assert!(!delete_user(&path, "alice").unwrap());
        let file = PasswordFile::load(&path).unwrap();
        assert_eq!(file.len(), 1);
        assert!(!file.verify("alice", b"three"));
        assert!(file.verify("bob", b"two"));

        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(leftovers, ["passwd"], "no temporary files remain");
    }

    #[test]
    fn edits_keep_comments_and_other_lines_in_place() {
        let (_dir, path) = temp();
        let bob = hash_password(b"bob").unwrap();
        let old = hash_password(b"old").unwrap();
        fs::write(&path, format!("# fleet users\nbob:{bob}\n\n  alice : {old}\n# end\nalice:{old}\n")).unwrap();
        set_password(&path, "alice", b"new").unwrap();
        let text = fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert_eq!(lines[0], "# fleet users");
        assert_eq!(lines[1], format!("bob:{bob}"));
        assert_eq!(lines[2], "");
        assert!(lines[3].starts_with("alice:$argon2id$"), "{text}");
        assert_eq!(lines[4], "# end");
        let file = PasswordFile::load(&path).unwrap();
        assert!(file.verify("alice", b"new"));
        assert!(file.verify("bob", b"bob"));
    }

    #[cfg(unix)]
    #[test]
    fn file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let (_dir, path) = temp();
        fs::write(&path, "# world readable\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        set_password(&path, "alice", b"pw").unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn refuses_usernames_that_do_not_roundtrip() {
        let (_dir, path) = temp();
        for name in ["", "a:b", "a\nb", "a\rb", "#admin", " alice", "alice ", "a\tb"] {
            let err = set_password(&path, name, b"pw").unwrap_err();
            assert!(matches!(err, Error::InvalidUsername { .. }), "{name:?}");
            assert!(matches!(delete_user(&path, name), Err(Error::InvalidUsername { .. })));
        }
        assert!(!path.exists(), "nothing was written");
        set_password(&path, "dev-7.fleet@example", b"pw").unwrap();
        assert!(PasswordFile::load(&path).unwrap().verify("dev-7.fleet@example", b"pw"));
    }

    #[test]
    fn delete_from_missing_file_creates_nothing() {
        let (_dir, path) = temp();
        assert!(!delete_user(&path, "alice").unwrap());
        assert!(!path.exists());
    }

    #[test]
    fn write_errors_name_the_path() {
        let (dir, _) = temp();
        let path = dir.path().join("missing-dir").join("passwd");
        let err = set_password(&path, "alice", b"pw").unwrap_err();
        assert!(matches!(err, Error::Io { .. }));
        assert!(err.to_string().contains("missing-dir"), "{err}");
    }
}
