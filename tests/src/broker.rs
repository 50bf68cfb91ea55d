//! Runs the real `fleetmq` binary as a child process for one test.
//!
//! Invariants: every broker gets its own temp dir (config, data, stderr log), every listener and the
//! metrics endpoint bind `127.0.0.1:0` so tests never collide on ports, every wait is bounded, and the
//! child is killed and reaped when the [`Broker`] is dropped. When a test panics while a broker is
//! alive, the tail of the broker's stderr is printed so the failure can be diagnosed.

use crate::tempdir::TempDir;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long the broker may take to print `fleetmq ready`.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// Config fragment that enables the Prometheus endpoint on an ephemeral port; tests that read
/// metrics include it (the endpoint is off unless configured, as in production).
pub const METRICS: &str = "[metrics]\nbind = \"127.0.0.1:0\"\n";

/// Substituted in config text by the temp dir's path, so configs can name files the test wrote.
pub const DIR_PLACEHOLDER: &str = "$DIR";

/// Path of the `fleetmq` binary: `FLEETMQ_BIN` if set, else the sibling of the test binary's
/// `deps/` directory (cargo puts both under `target/<profile>/`).
pub fn fleetmq_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("FLEETMQ_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("current_exe failed: {e}"));
    let candidate = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join(format!("fleetmq{}", std::env::consts::EXE_SUFFIX)))
        .unwrap_or_else(|| PathBuf::from("fleetmq"));
    if !candidate.is_file() {
        panic!(
            "the fleetmq binary was not found at {}; build it first with `cargo build -p fleetmq` \
             (same profile and CARGO_TARGET_DIR as the tests), run `cargo test --workspace`, or \
             point FLEETMQ_BIN at it",
            candidate.display()
        );
    }
    candidate
}

/// One running broker process.
pub struct Broker {
    child: Child,
    dir: TempDir,
    stderr_path: PathBuf,
    listeners: Vec<(String, SocketAddr)>,
    metrics_url: Option<String>,
    exited: Option<ExitStatus>,
    /// `RLIMIT_FSIZE` for the next start (simulates a full disk: writes past it fail with EFBIG).
    file_size_limit: Option<u64>,
}

impl Broker {
    /// Starts a broker in a fresh temp dir; `config_toml_extra` is merged over the base config
    /// (tables merge key by key, `[[listener]]` entries are added to the base TCP listener).
    pub fn start(config_toml_extra: &str) -> Broker {
        Broker::start_in(TempDir::new("fleetmq-e2e"), config_toml_extra)
    }

    /// Like [`Broker::start`] but in a directory the test already filled (certificates, ACL,
    /// password file); `$DIR` in the config text stands for that directory.
    pub fn start_in(dir: TempDir, config_toml_extra: &str) -> Broker {
        Broker::start_limited(dir, config_toml_extra, None)
    }

    /// Like [`Broker::start`], but no file the broker writes may grow past `bytes` (`RLIMIT_FSIZE`,
    /// with SIGXFSZ ignored): writes beyond it fail as they would on a full disk.
    pub fn start_with_file_size_limit(config_toml_extra: &str, bytes: u64) -> Broker {
        Broker::start_limited(TempDir::new("fleetmq-e2e"), config_toml_extra, Some(bytes))
    }

    fn start_limited(dir: TempDir, config_toml_extra: &str, file_size_limit: Option<u64>) -> Broker {
        let config = build_config(&dir, config_toml_extra);
        Broker::start_exact(dir, &config, file_size_limit)
    }

    /// Starts a broker on exactly `config` (no base config merged in, no bind rewritten): for
    /// cluster nodes, whose addresses the test chose.
    pub fn start_exact(dir: TempDir, config: &str, file_size_limit: Option<u64>) -> Broker {
        let config = config.to_string();
        dir.write("fleetmq.toml", &config);
        let stderr_path = dir.join("stderr.log");
        let (child, lines) = spawn_broker(&dir, &stderr_path, false, file_size_limit);
        let mut broker =
            Broker { child, dir, stderr_path, listeners: Vec::new(), metrics_url: None, exited: None, file_size_limit };
        broker.await_ready(&lines, &config);
        broker
    }

    /// Replaces the config file the next [`Broker::restart`] reads.
    pub fn rewrite_config(&self, config: &str) {
        self.dir.write("fleetmq.toml", config);
    }

    /// Sets or lifts the file size limit for later [`Broker::restart`]s.
    pub fn set_file_size_limit(&mut self, bytes: Option<u64>) {
        self.file_size_limit = bytes;
    }

    /// Kills the broker if it still runs (SIGKILL) and starts it again on the same config and data
    /// directory; listeners get new ports. Logs of every run are appended to the same stderr file.
    pub fn restart(&mut self) {
        if self.exited.is_none() {
            self.kill9();
        }
        let (child, lines) = spawn_broker(&self.dir, &self.stderr_path, true, self.file_size_limit);
        self.child = child;
        self.exited = None;
        self.listeners.clear();
        self.metrics_url = None;
        let config = std::fs::read_to_string(self.dir.join("fleetmq.toml")).unwrap_or_default();
        self.await_ready(&lines, &config);
    }

    /// Runs another broker process on the same config and data directory (while this one runs, or
    /// after it was stopped), waits up to `timeout` for it to exit, and returns its exit status
    /// (`None`: still running, then killed) and stderr.
    pub fn run_another(&self, timeout: Duration) -> (Option<ExitStatus>, String) {
        let err_path = self.dir.join("another-stderr.log");
        let (mut child, _lines) = spawn_broker(&self.dir, &err_path, false, None);
        let deadline = Instant::now() + timeout;
        let status = loop {
            match child.try_wait() {
                Ok(Some(st)) => break Some(st),
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
            }
        };
        (status, std::fs::read_to_string(&err_path).unwrap_or_default())
    }

    fn await_ready(&mut self, lines: &mpsc::Receiver<String>, config: &str) {
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match lines.recv_timeout(left) {
                Ok(l) => l,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    self.fail_start("did not print `fleetmq ready` in time", &seen, config)
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self.wait_exit(Duration::from_secs(2));
                    let why = format!("closed stdout before `fleetmq ready` (exit: {status:?})");
                    self.fail_start(&why, &seen, config)
                }
            };
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["fleetmq", "ready"] => break,
                ["fleetmq", "listening", kind, addr] => match addr.parse() {
                    Ok(a) => self.listeners.push((kind.to_string(), a)),
                    Err(_) => self.fail_start(&format!("bad listen line {line:?}"), &seen, config),
                },
                ["fleetmq", "metrics", url] => self.metrics_url = Some(url.to_string()),
                _ => {}
            }
            seen.push(line);
        }
    }

    fn fail_start(&mut self, why: &str, stdout: &[String], config: &str) -> ! {
        let _ = self.child.kill();
        let _ = self.child.wait();
        panic!(
            "fleetmq {why}\n--- config ---\n{config}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            stdout.join("\n"),
            self.stderr()
        );
    }

    /// Address of the first plain TCP listener.
    pub fn tcp_addr(&self) -> SocketAddr {
        self.listener("tcp")
    }

    /// Address of the bridge's Kafka-protocol listener (the config must declare one).
    pub fn kafka_addr(&self) -> SocketAddr {
        self.listener("kafka")
    }

    /// Address of the first TLS listener (the config must declare one).
    pub fn tls_addr(&self) -> SocketAddr {
        self.listener("tls")
    }

    fn listener(&self, kind: &str) -> SocketAddr {
        self.listeners
            .iter()
            .find(|(k, _)| k == kind)
            .map(|(_, a)| *a)
            .unwrap_or_else(|| panic!("broker printed no `{kind}` listener: {:?}", self.listeners))
    }

    /// Every listener line the broker printed, in order, as (kind, address).
    pub fn listeners(&self) -> &[(String, SocketAddr)] {
        &self.listeners
    }

    /// URL of the Prometheus endpoint (`http://127.0.0.1:PORT/metrics`); the config must include
    /// [`METRICS`].
    pub fn metrics_url(&self) -> String {
        self.try_metrics_url()
            .unwrap_or_else(|| panic!("broker printed no `fleetmq metrics` line (does the config include METRICS?)"))
    }

    /// The metrics URL if the broker announced one.
    pub fn try_metrics_url(&self) -> Option<String> {
        self.metrics_url.clone()
    }

    /// Process id of the broker.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The broker's working directory (holds the config, data dir and stderr log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Kills the broker with SIGKILL and reaps it.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        if let Ok(st) = self.child.wait() {
            self.exited = Some(st);
        }
    }

    /// Sends SIGTERM (graceful shutdown) without waiting.
    pub fn sigterm(&self) {
        self.signal("TERM");
    }

    /// Sends the named signal (`"TERM"`, `"INT"`, `"KILL"`, ...) via `kill(1)` without waiting.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap_or_else(|e| panic!("cannot run kill: {e}"));
        assert!(status.success(), "kill -{name} {} failed: {status}", self.pid());
    }

    /// Waits up to `timeout` for the process to exit; `None` if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.exited {
                return Some(st);
            }
            match self.child.try_wait() {
                Ok(Some(st)) => {
                    self.exited = Some(st);
                    return Some(st);
                }
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                _ => return None,
            }
        }
    }

    /// Everything the broker wrote to stderr so far, whole (for searching early log lines).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Everything the broker wrote to stderr so far (its logs), at most the last 64 KiB.
    pub fn stderr(&self) -> String {
        tail(&self.stderr_path, 64 * 1024)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- fleetmq (pid {}) stderr tail ---\n{}\n--- end of fleetmq stderr ---",
                self.child.id(),
                tail(&self.stderr_path, 16 * 1024)
            );
        }
        if self.exited.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn tail(path: &Path, max: u64) -> String {
    let Ok(mut f) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(max)));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// Forwards stdout lines to a channel; keeps draining after the receiver is gone so the broker
/// never blocks on a full pipe.
fn spawn_line_reader(stdout: Option<std::process::ChildStdout>) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    if let Some(out) = stdout {
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
    }
    rx
}

/// Starts the binary on `dir/fleetmq.toml`, sending stderr to `stderr_path` (appended or truncated),
/// optionally under a file size limit (set by `prlimit`, with SIGXFSZ ignored so an oversize write
/// fails with EFBIG instead of killing the process; both survive `exec`).
fn spawn_broker(
    dir: &TempDir,
    stderr_path: &Path,
    append: bool,
    file_size_limit: Option<u64>,
) -> (Child, mpsc::Receiver<String>) {
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(append)
        .write(true)
        .truncate(!append)
        .open(stderr_path)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", stderr_path.display()));
    let bin = fleetmq_bin();
    let mut command = match file_size_limit {
        None => Command::new(&bin),
        Some(bytes) => {
            let mut c = Command::new("sh");
            c.arg("-c").arg(format!("trap '' XFSZ; exec prlimit --fsize={bytes} -- \"$0\" \"$@\"")).arg(&bin);
            c
        }
    };
    let mut child = command
        .arg("--config")
        .arg(dir.join("fleetmq.toml"))
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(stderr))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn {}: {e}", bin.display()));
    let lines = spawn_line_reader(child.stdout.take());
    (child, lines)
}

/// The config file text: a base (one TCP listener, data dir in the temp dir)
/// with `extra` merged over it. Every listener's bind address, and the metrics endpoint's when
/// configured, is forced to `127.0.0.1:0`.
pub fn build_config(dir: &TempDir, extra: &str) -> String {
    let mut table = base_config(dir);
    let extra = extra.replace(DIR_PLACEHOLDER, &dir.display());
    let extra: toml::Table = extra.parse().unwrap_or_else(|e| panic!("test config does not parse: {e}\n{extra}"));
    merge(&mut table, extra);
    if let Some(toml::Value::Array(listeners)) = table.get_mut("listener") {
        for l in listeners.iter_mut() {
            if let toml::Value::Table(t) = l {
                t.insert("bind".into(), toml::Value::String("127.0.0.1:0".into()));
            }
        }
    }
    if let Some(toml::Value::Table(m)) = table.get_mut("metrics") {
        m.insert("bind".into(), toml::Value::String("127.0.0.1:0".into()));
    }
    table.to_string()
}

/// The base every test config starts from: one TCP listener, data dir in `dir`, the engine
/// `FLEETMQ_TEST_ENGINE` names.
pub fn base_config(dir: &TempDir) -> toml::Table {
    // FLEETMQ_TEST_ENGINE=rocksdb runs every suite on the durable engine (tests that set
    // `[storage]` themselves keep their choice).
    let engine = std::env::var("FLEETMQ_TEST_ENGINE").unwrap_or_else(|_| "memory".into());
    let sync = durable_sync(&engine);
    let base = format!(
        "[node]\nid = \"e2e\"\ndata_dir = {data:?}\n\
         [log]\nlevel = \"info\"\n\
         [storage]\nengine = {engine:?}\n{sync}\
         [[listener]]\nkind = \"tcp\"\nbind = \"127.0.0.1:0\"\n",
        data = dir.join("data").display().to_string()
    );
    base.parse().unwrap_or_else(|e| panic!("base config does not parse: {e}"))
}

/// The `sync` line of the durable pass: every acknowledgement waits for its sync, the strictest
/// setting (the default, `interval`, is covered by the durability suite's own tests).
pub fn durable_sync(engine: &str) -> &'static str {
    if engine == "rocksdb" {
        "sync = \"always\"\n"
    } else {
        ""
    }
}

/// Merges `from` over `into`: tables key by key, `[[listener]]` entries appended.
pub fn merge(into: &mut toml::Table, from: toml::Table) {
    for (k, v) in from {
        match (into.get_mut(&k), v) {
            (Some(toml::Value::Table(a)), toml::Value::Table(b)) => merge(a, b),
            (Some(toml::Value::Array(a)), toml::Value::Array(b)) if k == "listener" => a.extend(b),
            (_, v) => {
                into.insert(k, v);
            }
        }
    }
}
