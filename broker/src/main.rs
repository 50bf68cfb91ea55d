//! The `fleetmq` binary: runs a node (embedded single node with no arguments) and the operator
//! subcommands `check-config`, `certs`, `passwd`, `plan-shards` and `log` (inspecting the bridge's
//! embedded log).
//!
//! Unsafe code is denied here and forbidden in the library; the one reviewed exception is the
//! allocator call in [`return_freed_memory`].
#![deny(unsafe_code)]

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use fleetmq::server::Server;
use fleetmq_core::config::{Config, ListenerKind};
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::Duration;

mod log_cli;

/// mimalloc instead of the system allocator: the publish path allocates and frees many small
/// objects from two worker threads, where glibc malloc spent about a quarter of the broker's CPU
/// in a bridged QoS 1 run (see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Runs on a runtime worker about to go idle: at most every 100 ms per thread, has mimalloc take
/// back the blocks other threads freed into this thread's pages and return free pages to the OS
/// (`force`: without waiting for its purge delay, which only a later allocation would act on).
/// Without it, memory freed on another thread (a connection's task ending where it was not
/// spawned) stays counted as used until this thread allocates that size again, and a node that
/// went quiet after a burst (a connect storm whose connections then park) keeps the burst's peak
/// resident: 1.2-1.7 KB per parked idle connection instead of typically 0.67-0.73 KB, measured
/// with `fleetmq-loadtest connect` (10 000 connections; BENCHMARKS.md). Not a guarantee: frees
/// after a worker's last collect stay until it next goes idle. A busy worker seldom parks, so
/// this costs a loaded node little; the QoS 0/1/2 benchmarks did not change with it.
fn return_freed_memory() {
    thread_local!(static LAST: std::cell::Cell<Option<std::time::Instant>> = const { std::cell::Cell::new(None) });
    let now = std::time::Instant::now();
    if LAST.get().is_some_and(|t| now.duration_since(t) < Duration::from_millis(100)) {
        return;
    }
    LAST.set(Some(now));
    // SAFETY: `mi_collect` takes no pointers and has no preconditions: it frees and purges only
    // memory mimalloc itself owns and has already seen freed (the calling thread's heap, and with
    // `force` the free pages of every thread's arenas); it calls back into no Rust code.
    #[expect(unsafe_code, reason = "FFI call into the global allocator; see the SAFETY note")]
    unsafe {
        libmimalloc_sys::mi_collect(true)
    };
}

#[derive(Parser)]
#[command(name = "fleetmq", version, about = "FleetMQ MQTT broker")]
struct Cli {
    /// TOML config file; without it a single node listens on 127.0.0.1:1883 with an in-memory store.
    #[arg(short, long, global = false)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a config file and exit (0 when valid).
    CheckConfig { file: PathBuf },
    /// Write a development CA, server and client certificate (ca.pem, server.pem, server.key,
    /// client.pem, client.key).
    Certs {
        #[arg(long)]
        out: PathBuf,
        /// Comma-separated DNS names and IP addresses for the server certificate.
        #[arg(long, value_delimiter = ',', default_value = "localhost,127.0.0.1")]
        hosts: Vec<String>,
        /// Common name of the client certificate.
        #[arg(long, default_value = "fleetmq-client")]
        client_cn: String,
    },
    /// Add or replace a user in a password file (password from --password or stdin), or delete one.
    Passwd {
        file: PathBuf,
        user: String,
        #[arg(long, conflicts_with = "delete")]
        password: Option<String>,
        #[arg(long)]
        delete: bool,
    },
    /// Show which client ids a change of the shard set moves: their owners under the `[cluster]`
    /// of FROM and of TO (config files of any cluster node).
    PlanShards {
        from: PathBuf,
        to: PathBuf,
        /// A file with one client id per line; without it, N ids `<prefix><n>`.
        #[arg(long)]
        ids_file: Option<PathBuf>,
        #[arg(long, default_value_t = 10_000, conflicts_with = "ids_file")]
        ids: usize,
        #[arg(long, default_value = "device-", conflicts_with = "ids_file")]
        prefix: String,
    },
    /// Inspect the bridge's embedded log (read-only: safe while the broker runs).
    Log {
        #[command(subcommand)]
        command: LogCommand,
        /// The node's config file (finds `[bridge.log] dir`, default `<data_dir>/bridge-log`).
        #[arg(long, global = true)]
        config: Option<PathBuf>,
        /// The log directory itself (instead of --config).
        #[arg(long, global = true, conflicts_with = "config")]
        dir: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum LogCommand {
    /// List topics with their partitions and offsets.
    Topics,
    /// Print records of a topic (all partitions, or one).
    Tail {
        #[arg(long)]
        topic: String,
        #[arg(long)]
        partition: Option<u32>,
        /// `earliest`, `latest` or an offset.
        #[arg(long, default_value = "earliest")]
        from: String,
        /// Keep printing new records until interrupted.
        #[arg(long)]
        follow: bool,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::CheckConfig { file }) => {
            Config::load(&file)?;
            println!("{}: ok", file.display());
            Ok(())
        }
        Some(Command::Certs { out, hosts, client_cn }) => {
            let written = fleetmq_certs::dev::generate_dev_certs(&out, &hosts, &client_cn)?;
            for p in written {
                println!("wrote {}", p.display());
            }
            Ok(())
        }
        Some(Command::Passwd { file, user, password, delete }) => passwd(file, user, password, delete),
        Some(Command::PlanShards { from, to, ids_file, ids, prefix }) => {
            let (from, to) = (Config::load(&from)?.cluster, Config::load(&to)?.cluster);
            let ids: Vec<String> = match ids_file {
                Some(f) => std::fs::read_to_string(&f)
                    .with_context(|| format!("cannot read {}", f.display()))?
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(str::to_string)
                    .collect(),
                None => (0..ids).map(|i| format!("{prefix}{i}")).collect(),
            };
            // A closed pipe (`| head`) is not an error worth a panic.
            let _ = write!(std::io::stdout().lock(), "{}", fleetmq_cluster::plan::plan(&from, &to, &ids));
            Ok(())
        }
        Some(Command::Log { command, config, dir }) => {
            let dir = match (dir, config) {
                (Some(d), _) => d,
                (None, c) => {
                    let config = match c {
                        Some(path) => Config::load(&path)?,
                        None => Config::parse("")?,
                    };
                    fleetmq_core::bridge::start::log_config(&config.bridge, &config.node.data_dir).dir
                }
            };
            match command {
                LogCommand::Topics => log_cli::topics(&dir),
                LogCommand::Tail { topic, partition, from, follow } => {
                    log_cli::tail(&dir, &topic, partition, &from, follow)
                }
            }
        }
        None => {
            let config = match &cli.config {
                Some(path) => Config::load(path)?,
                None => Config::parse("")?,
            };
            run(config)
        }
    }
}

fn passwd(file: PathBuf, user: String, password: Option<String>, delete: bool) -> anyhow::Result<()> {
    if delete {
        if !fleetmq_core::auth::delete_user(&file, &user)? {
            bail!("user {user} not found in {}", file.display());
        }
        return Ok(());
    }
    let password = match password {
        Some(p) => p,
        None => {
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line).context("reading password from stdin")?;
            line.trim_end_matches(['\r', '\n']).to_string()
        }
    };
    if password.is_empty() {
        bail!("empty password");
    }
    fleetmq_core::auth::set_password(&file, &user, password.as_bytes())?;
    Ok(())
}

fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    // Colours only on a terminal: log files and collectors get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).init();
}

fn run(config: Config) -> anyhow::Result<()> {
    init_logging(&config.log.level);
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().on_thread_park(return_freed_memory).build()?;
    runtime.block_on(async move {
        let timeout = Duration::from_millis(config.node.shutdown_timeout_ms);
        // Handlers go in before `fleetmq ready`: a signal sent right after it must shut down
        // gracefully, not kill the process with the default action.
        let signals = Signals::install()?;
        let server = Server::start(config, true).await?;
        let mut out = std::io::stdout().lock();
        for (kind, addr) in &server.listeners {
            writeln!(out, "fleetmq listening {} {addr}", kind_name(*kind))?;
        }
        if let Some(addr) = server.internal {
            writeln!(out, "fleetmq listening cluster {addr}")?;
        }
        if let Some(addr) = server.kafka {
            writeln!(out, "fleetmq listening kafka {addr}")?;
        }
        if let Some(addr) = server.metrics {
            writeln!(out, "fleetmq metrics http://{addr}/metrics")?;
        }
        writeln!(out, "fleetmq ready")?;
        out.flush()?;
        drop(out);
        tracing::info!(listeners = ?server.listeners, "FleetMQ started");
        signals.wait().await;
        tracing::info!("shutting down");
        if !server.shutdown(timeout).await {
            tracing::warn!("connections still open at the shutdown deadline");
        }
        Ok(())
    })
}

fn kind_name(kind: ListenerKind) -> &'static str {
    kind.as_str()
}

/// SIGTERM and SIGINT, the signals that shut a node down gracefully.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals { term: signal(SignalKind::terminate())?, int: signal(SignalKind::interrupt())? })
    }

    async fn wait(mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}
