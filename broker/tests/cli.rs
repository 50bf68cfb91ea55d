//! The `fleetmq` command line contract: `check-config`, `certs` and `passwd`.
//!
//! Living in the broker package makes `cargo test --workspace` build the `fleetmq` binary, which
//! the end-to-end suites in `fleetmq-tests` then run. Each test works in its own temp dir.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

struct Tmp(PathBuf);

impl Tmp {
    fn new() -> Tmp {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "fleetmq-cli-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).expect("create temp dir");
        Tmp(p)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).expect("write temp file");
        p
    }
}

impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn fleetmq(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fleetmq"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn fleetmq");
    if let Some(mut input) = child.stdin.take() {
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).expect("write stdin");
        }
    }
    child.wait_with_output().expect("wait for fleetmq")
}

fn all_output(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn valid_config(dir: &Tmp, extra: &str) -> String {
    format!(
        "[node]\nid = \"cli\"\ndata_dir = {:?}\n\n[[listener]]\nkind = \"tcp\"\nbind = \"127.0.0.1:0\"\n\n{extra}",
        dir.path("data").display().to_string()
    )
}

fn arg(p: &Path) -> String {
    p.display().to_string()
}

#[test]
fn check_config_accepts_a_valid_file() {
    let dir = Tmp::new();
    let file = dir.write(
        "ok.toml",
        &valid_config(
            &dir,
            "[mqtt]\nmax_keepalive = 60\nmax_qos = 1\n\n[limits]\nqueue_overflow = \"reject_newest\"\n\n[sys]\ninterval_ms = 0\n",
        ),
    );
    let out = fleetmq(&["check-config", &arg(&file)], None);
    assert!(out.status.success(), "valid config rejected: {}", all_output(&out));
}

#[test]
fn check_config_names_an_unknown_key() {
    let dir = Tmp::new();
    let file = dir.write("unknown.toml", &valid_config(&dir, "[mqtt]\nmax_keepalive = 60\nfrobnicate_level = 3\n"));
    let out = fleetmq(&["check-config", &arg(&file)], None);
    assert_eq!(out.status.code(), Some(1), "{}", all_output(&out));
    assert!(all_output(&out).contains("frobnicate_level"), "error does not name the key: {}", all_output(&out));
}

#[test]
fn check_config_names_a_key_with_a_bad_value() {
    let cases = [
        ("queue_overflow", "[limits]\nqueue_overflow = \"sometimes\"\n"),
        ("max_keepalive", "[mqtt]\nmax_keepalive = \"soon\"\n"),
        ("max_qos", "[mqtt]\nmax_qos = 3\n"),
        ("kind", "[[listener]]\nkind = \"carrier-pigeon\"\nbind = \"127.0.0.1:0\"\n"),
    ];
    for (key, extra) in cases {
        let dir = Tmp::new();
        let file = dir.write("bad.toml", &valid_config(&dir, extra));
        let out = fleetmq(&["check-config", &arg(&file)], None);
        assert_eq!(out.status.code(), Some(1), "{key}: {}", all_output(&out));
        assert!(all_output(&out).contains(key), "error for a bad {key} does not name it: {}", all_output(&out));
    }
}

#[test]
fn check_config_fails_on_a_missing_file() {
    let dir = Tmp::new();
    let out = fleetmq(&["check-config", &arg(&dir.path("absent.toml"))], None);
    assert_eq!(out.status.code(), Some(1), "{}", all_output(&out));
}

#[test]
fn certs_writes_the_six_pem_files() {
    let dir = Tmp::new();
    let out_dir = dir.path("certs");
    let out = fleetmq(&["certs", "--out", &arg(&out_dir), "--hosts", "localhost,127.0.0.1"], None);
    assert!(out.status.success(), "certs failed: {}", all_output(&out));
    for (name, label) in [
        ("ca.pem", "CERTIFICATE"),
        ("server.pem", "CERTIFICATE"),
        ("client.pem", "CERTIFICATE"),
        ("ca.key", "PRIVATE KEY"),
        ("server.key", "PRIVATE KEY"),
        ("client.key", "PRIVATE KEY"),
    ] {
        let text = std::fs::read_to_string(out_dir.join(name)).unwrap_or_else(|e| panic!("{name} not written: {e}"));
        assert!(text.starts_with("-----BEGIN ") && text.contains(label), "{name} is not a PEM {label}: {text:?}");
    }
    let ca = std::fs::read_to_string(out_dir.join("ca.pem")).unwrap_or_default();
    let server = std::fs::read_to_string(out_dir.join("server.pem")).unwrap_or_default();
    assert_ne!(ca, server, "server certificate must differ from the CA");
}

fn user_lines(file: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(file)
        .expect("password file")
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (u, h) = l.split_once(':').expect("user:hash line");
            (u.to_string(), h.to_string())
        })
        .collect()
}

#[test]
fn passwd_sets_replaces_and_deletes_users() {
    let dir = Tmp::new();
    let file = dir.path("passwords");
    let f = arg(&file);

    let out = fleetmq(&["passwd", &f, "alice", "--password", "first-secret"], None);
    assert!(out.status.success(), "passwd failed: {}", all_output(&out));
    let out = fleetmq(&["passwd", &f, "bob"], Some("bob-secret\n"));
    assert!(out.status.success(), "passwd from stdin failed: {}", all_output(&out));

    let lines = user_lines(&file);
    let users: Vec<&str> = lines.iter().map(|(u, _)| u.as_str()).collect();
    assert_eq!(users, ["alice", "bob"]);
    for (user, hash) in &lines {
        assert!(hash.starts_with("$argon2id$"), "{user}: not an argon2id hash: {hash}");
        assert!(!hash.contains("secret"), "{user}: plaintext leaked into the file");
    }
    let alice_before = lines[0].1.clone();

    let out = fleetmq(&["passwd", &f, "alice", "--password", "second-secret"], None);
    assert!(out.status.success(), "passwd replace failed: {}", all_output(&out));
    let lines = user_lines(&file);
    assert_eq!(lines.len(), 2, "replacing a password must not add a line: {lines:?}");
    let alice_after = lines.iter().find(|(u, _)| u == "alice").expect("alice kept");
    assert_ne!(alice_after.1, alice_before, "alice's hash did not change");

    let out = fleetmq(&["passwd", "--delete", &f, "alice"], None);
    assert!(out.status.success(), "passwd --delete failed: {}", all_output(&out));
    let users: Vec<String> = user_lines(&file).into_iter().map(|(u, _)| u).collect();
    assert_eq!(users, ["bob"]);
}
