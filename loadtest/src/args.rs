//! Command-line syntax: global connection/output flags, one subcommand per scenario, and `run FILE`.
//! Converts flags into a partial [`Spec`] so flags and files share one validation path.

use clap::{Args, Parser, Subcommand};
use fleetmq_loadtest::scenario::duration::{self, Secs};
use fleetmq_loadtest::scenario::spec::{ConnectSpec, ConnectionSpec, PubSubSpec, Spec, WorkloadSpec};
use std::path::PathBuf;

const AFTER_HELP: &str = "\
Exit status: 0 PASS, 3 FAIL (a delivery guarantee was broken or clients failed), 130 interrupted,
1 runtime error (broker unreachable, TLS failure), 2 invalid arguments or scenario.

Examples:
  fleetmq-loadtest fan-in --publishers 50 --subscribers 2 --qos 1 --rate 100 --duration 30s
  fleetmq-loadtest fan-out --publishers 1 --subscribers 500 --qos 0 --rate 0 --json
  fleetmq-loadtest p2p --pairs 1000 --qos 2 --mqtt 5 --plot p2p.svg
  fleetmq-loadtest shared --publishers 10 --subscribers 4 --group workers --qos 2
  fleetmq-loadtest connect --connections 50000 --rate 2000 --duration 60s \\
      --source-addrs 127.0.0.1,127.0.0.2,127.0.0.3 --processes 4 --broker-pid $(pidof fleetmq)
  fleetmq-loadtest --host broker.local --tls --ca ca.pem run loadtest/scenarios/fan-in.toml";

/// MQTT load and correctness tool for any MQTT 3.1.1 / 5.0 broker.
#[derive(Debug, Parser)]
#[command(name = "fleetmq-loadtest", version, after_help = AFTER_HELP)]
pub struct Cli {
    #[command(flatten)]
    pub conn: ConnArgs,
    #[command(flatten)]
    pub out: OutArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Broker connection and process layout.
#[derive(Debug, Args)]
pub struct ConnArgs {
    /// Broker host [default: 127.0.0.1]
    #[arg(long, global = true)]
    pub host: Option<String>,
    /// Broker port [default: 1883, or 8883 with --tls]
    #[arg(long, global = true)]
    pub port: Option<u16>,
    /// Connect with TLS
    #[arg(long, global = true)]
    pub tls: bool,
    /// CA certificate (PEM) that signs the broker certificate [default: system roots]
    #[arg(long, global = true, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Client certificate chain (PEM) for mutual TLS (with --key)
    #[arg(long, global = true, value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// Client private key (PEM) for mutual TLS (with --cert)
    #[arg(long, global = true, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Do not verify the broker certificate (development only)
    #[arg(long, global = true)]
    pub insecure: bool,
    /// MQTT username
    #[arg(long, global = true)]
    pub username: Option<String>,
    /// MQTT password
    #[arg(long, global = true)]
    pub password: Option<String>,
    /// MQTT version: 3.1.1 or 5 [default: 3.1.1]
    #[arg(long, global = true, value_name = "VERSION")]
    pub mqtt: Option<String>,
    /// Keep-alive seconds [default: 30]
    #[arg(long, global = true, value_name = "SECS")]
    pub keepalive: Option<u16>,
    /// Bound on TCP connect + TLS + CONNACK [default: 10s]
    #[arg(long, global = true, value_name = "DURATION", value_parser = duration::parse)]
    pub connect_timeout: Option<std::time::Duration>,
    /// Comma-separated local addresses to bind client sockets to, round-robin (connect scenario)
    #[arg(long, global = true, value_name = "IP,IP,...", value_delimiter = ',')]
    pub source_addrs: Option<Vec<String>>,
    /// Split the clients over N worker processes (each has its own open-files limit)
    #[arg(long, global = true, value_name = "N")]
    pub processes: Option<u32>,
    /// Runtime worker threads per process [default: cores / processes]
    #[arg(long, global = true, value_name = "N")]
    pub threads: Option<usize>,
    /// Run id used in topics and client ids [default: generated]
    #[arg(long, global = true, value_name = "ID")]
    pub run_id: Option<String>,
}

/// Output options.
#[derive(Debug, Args)]
pub struct OutArgs {
    /// Print one JSON object with every figure instead of the table
    #[arg(long, global = true)]
    pub json: bool,
    /// Write latency and throughput charts to FILE.svg
    #[arg(long, global = true, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// Never show the live progress line
    #[arg(long, global = true)]
    pub no_progress: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Open N idle connections at a rate, hold them, report connect latency, failures and broker RSS.
    ///
    /// Idle connections use a minimal built-in MQTT client (CONNECT, CONNACK, PINGREQ, DISCONNECT)
    /// instead of rumqttc, because rumqttc cannot bind a socket's source address; binding
    /// --source-addrs is what lets one host open more connections than one address's ephemeral
    /// ports allow. Use --processes to stay under the per-process open-files limit.
    Connect(ConnectArgs),
    /// P publishers on distinct topics → S subscribers on a `+` wildcard.
    FanIn(PubSubArgs),
    /// P publishers → S subscribers, all on one topic.
    FanOut(PubSubArgs),
    /// N publisher/subscriber pairs, one topic per pair.
    P2p(P2pArgs),
    /// P publishers → one `$share/GROUP/...` group of S members (each message to exactly one).
    Shared(SharedArgs),
    /// Run a TOML scenario file (connection flags given here override its [connection]).
    Run {
        /// Scenario file.
        file: PathBuf,
    },
    /// Internal: worker process for --processes.
    #[command(name = "__worker", hide = true)]
    Worker,
}

#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// Connections to open [default: 1000]
    #[arg(long, short = 'n')]
    pub connections: Option<u32>,
    /// New connections per second over all processes, 0 = as fast as possible (at most 512
    /// handshakes in flight per process) [default: 500]
    #[arg(long)]
    pub rate: Option<f64>,
    /// How long to hold the connections once open [default: 10s]
    #[arg(long, value_parser = duration::parse)]
    pub duration: Option<std::time::Duration>,
    /// Broker process id: report its RSS growth per connection (reads /proc/PID/status)
    #[arg(long, value_name = "PID")]
    pub broker_pid: Option<u32>,
}

/// Message flow options shared by the pub/sub scenarios.
#[derive(Debug, Args)]
pub struct MsgArgs {
    /// QoS 0, 1 or 2 [default: 1]
    #[arg(long)]
    pub qos: Option<u8>,
    /// Payload bytes, at least 16 (publisher, sequence, send time + padding) [default: 64]
    #[arg(long, value_name = "BYTES")]
    pub payload: Option<usize>,
    /// Messages per second per publisher, 0 = as fast as possible [default: 10]
    #[arg(long, value_name = "MSG/S")]
    pub rate: Option<f64>,
    /// Measured publishing time [default: 10s]
    #[arg(long, value_parser = duration::parse)]
    pub duration: Option<std::time::Duration>,
    /// Publishing before measurement starts (excluded from latency and throughput) [default: 1s]
    #[arg(long, value_parser = duration::parse)]
    pub warmup: Option<std::time::Duration>,
    /// Longest wait after the last publish for in-flight deliveries [default: 5s]
    #[arg(long, value_parser = duration::parse)]
    pub drain: Option<std::time::Duration>,
    /// Clean sessions (the default)
    #[arg(long, conflicts_with = "persistent")]
    pub clean: bool,
    /// Persistent sessions (clean session off; 5.0 session expiry 300 s)
    #[arg(long)]
    pub persistent: bool,
    /// Max unacknowledged QoS 1/2 publishes per publisher [default: 100]
    #[arg(long, value_name = "N")]
    pub inflight: Option<u16>,
    /// First topic level [default: bench]
    #[arg(long, value_name = "LEVEL")]
    pub topic_prefix: Option<String>,
}

#[derive(Debug, Args)]
pub struct PubSubArgs {
    /// Publishers
    #[arg(long, short = 'P')]
    pub publishers: Option<u32>,
    /// Subscribers
    #[arg(long, short = 'S')]
    pub subscribers: Option<u32>,
    #[command(flatten)]
    pub msg: MsgArgs,
}

#[derive(Debug, Args)]
pub struct P2pArgs {
    /// Publisher/subscriber pairs [default: 10]
    #[arg(long, short = 'n')]
    pub pairs: Option<u32>,
    #[command(flatten)]
    pub msg: MsgArgs,
}

#[derive(Debug, Args)]
pub struct SharedArgs {
    /// Publishers [default: 10]
    #[arg(long, short = 'P')]
    pub publishers: Option<u32>,
    /// Group members [default: 5]
    #[arg(long, short = 'S')]
    pub subscribers: Option<u32>,
    /// Shared subscription group name [default: loadtest]
    #[arg(long)]
    pub group: Option<String>,
    #[command(flatten)]
    pub msg: MsgArgs,
}

impl ConnArgs {
    /// The connection flags that were given.
    pub fn spec(&self) -> ConnectionSpec {
        ConnectionSpec {
            host: self.host.clone(),
            port: self.port,
            tls: self.tls.then_some(true),
            ca: self.ca.clone(),
            cert: self.cert.clone(),
            key: self.key.clone(),
            insecure: self.insecure.then_some(true),
            username: self.username.clone(),
            password: self.password.clone(),
            mqtt: self.mqtt.clone(),
            keepalive: self.keepalive,
            connect_timeout: self.connect_timeout.map(Secs),
            source_addrs: self.source_addrs.clone(),
        }
    }
}

impl MsgArgs {
    fn spec(&self) -> PubSubSpec {
        PubSubSpec {
            qos: self.qos,
            payload: self.payload,
            rate: self.rate,
            duration: self.duration.map(Secs),
            warmup: self.warmup.map(Secs),
            drain: self.drain.map(Secs),
            clean: if self.persistent { Some(false) } else { self.clean.then_some(true) },
            inflight: self.inflight,
            topic_prefix: self.topic_prefix.clone(),
            ..PubSubSpec::default()
        }
    }
}

/// The workload given by a scenario subcommand (`None` for `run` and the worker).
pub fn workload(cmd: &Command) -> Option<WorkloadSpec> {
    Some(match cmd {
        Command::Connect(a) => WorkloadSpec::Connect(ConnectSpec {
            connections: a.connections,
            rate: a.rate,
            duration: a.duration.map(Secs),
            broker_pid: a.broker_pid,
        }),
        Command::FanIn(a) => {
            WorkloadSpec::FanIn(PubSubSpec { publishers: a.publishers, subscribers: a.subscribers, ..a.msg.spec() })
        }
        Command::FanOut(a) => {
            WorkloadSpec::FanOut(PubSubSpec { publishers: a.publishers, subscribers: a.subscribers, ..a.msg.spec() })
        }
        Command::P2p(a) => WorkloadSpec::P2p(PubSubSpec { pairs: a.pairs, ..a.msg.spec() }),
        Command::Shared(a) => WorkloadSpec::Shared(PubSubSpec {
            publishers: a.publishers,
            subscribers: a.subscribers,
            group: a.group.clone(),
            ..a.msg.spec()
        }),
        Command::Run { .. } | Command::Worker => return None,
    })
}

/// A spec from flags alone.
pub fn cli_spec(cli: &Cli, workload: WorkloadSpec) -> Spec {
    Spec {
        name: None,
        run_id: cli.conn.run_id.clone(),
        processes: cli.conn.processes,
        threads: cli.conn.threads,
        connection: cli.conn.spec(),
        scenario: workload,
    }
}
