//! Defaults and validation: [`Spec`] → [`Scenario`].
//!
//! Invariants: every check reports the key as the user wrote it ([`Origin`]); limits are those the
//! drivers rely on (payload ≥ 16 bytes, QoS ≤ 2, at least one client of each needed role, topic
//! prefix and group free of wildcards and separators that would break routing).

use super::spec::{ConnectSpec, ConnectionSpec, Origin, PubSubSpec, Spec, WorkloadSpec};
use super::{ConnectLoad, Connection, Error, MqttVersion, PubSubKind, PubSubLoad, Result, Scenario, Workload};
use crate::payload::HEADER_LEN;
use std::net::IpAddr;
use std::time::Duration;

/// Largest payload accepted (the MQTT packet limit is 256 MiB; stay well below).
pub const MAX_PAYLOAD: usize = 64 * 1024 * 1024;
/// Most worker processes.
pub const MAX_PROCESSES: u32 = 256;

struct Keys(Origin);

impl Keys {
    fn name(&self, table: &str, key: &str) -> String {
        match self.0 {
            Origin::File if table.is_empty() => key.to_string(),
            Origin::File => format!("{table}.{key}"),
            Origin::Cli => format!("--{}", key.replace('_', "-")),
        }
    }

    fn err(&self, table: &str, key: &str, message: impl Into<String>) -> Error {
        Error::Invalid { key: self.name(table, key), message: message.into() }
    }
}

impl Spec {
    /// Applies defaults and validates; `origin` decides how keys are named in errors.
    pub fn resolve(self, origin: Origin) -> Result<Scenario> {
        let k = Keys(origin);
        let connection = resolve_connection(&k, self.connection)?;
        let (workload, default_name) = match self.scenario {
            WorkloadSpec::Connect(c) => (Workload::Connect(resolve_connect(&k, c)?), "connect"),
            WorkloadSpec::FanIn(p) => (Workload::PubSub(resolve_pubsub(&k, PubSubKind::FanIn, p)?), "fan-in"),
            WorkloadSpec::FanOut(p) => (Workload::PubSub(resolve_pubsub(&k, PubSubKind::FanOut, p)?), "fan-out"),
            WorkloadSpec::P2p(p) => (Workload::PubSub(resolve_pubsub(&k, PubSubKind::P2p, p)?), "p2p"),
            WorkloadSpec::Shared(p) => (Workload::PubSub(resolve_pubsub(&k, PubSubKind::Shared, p)?), "shared"),
        };
        if matches!(workload, Workload::PubSub(_)) && !connection.source_addrs.is_empty() {
            return Err(k.err(
                "connection",
                "source_addrs",
                "only the connect scenario binds source addresses (rumqttc cannot); spread pub/sub clients with --processes",
            ));
        }
        let processes = self.processes.unwrap_or(1);
        if processes == 0 || processes > MAX_PROCESSES {
            return Err(k.err("", "processes", format!("must be 1..={MAX_PROCESSES} (got {processes})")));
        }
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let per_process = (cores / processes as usize).max(1);
        let threads = self.threads.unwrap_or(per_process);
        if threads == 0 || threads > 1024 {
            return Err(k.err("", "threads", format!("must be 1..=1024 (got {threads})")));
        }
        let run_id = match self.run_id {
            Some(id) => {
                if id.is_empty()
                    || id.len() > 32
                    || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                {
                    return Err(k.err("", "run_id", "must be 1-32 characters of A-Z a-z 0-9 - _"));
                }
                id
            }
            None => generate_run_id(),
        };
        Ok(Scenario {
            name: self.name.unwrap_or_else(|| default_name.to_string()),
            run_id,
            processes,
            threads,
            connection,
            workload,
        })
    }
}

fn generate_run_id() -> String {
    let ns = crate::payload::now_ns();
    format!("{:x}{:x}", ns / 1_000_000 % 0xFF_FFFF, std::process::id() % 0xFFF)
}

fn resolve_connection(k: &Keys, c: ConnectionSpec) -> Result<Connection> {
    const T: &str = "connection";
    let tls = c.tls.unwrap_or(false);
    let host = c.host.unwrap_or_else(|| "127.0.0.1".to_string());
    if host.is_empty() {
        return Err(k.err(T, "host", "must not be empty"));
    }
    let port = c.port.unwrap_or(if tls { 8883 } else { 1883 });
    if port == 0 {
        return Err(k.err(T, "port", "must be 1..=65535"));
    }
    for (key, set) in [("ca", c.ca.is_some()), ("cert", c.cert.is_some()), ("insecure", c.insecure == Some(true))] {
        if set && !tls {
            return Err(k.err(T, key, format!("requires {}", k.name(T, "tls"))));
        }
    }
    if c.cert.is_some() != c.key.is_some() {
        let missing = if c.cert.is_some() { "key" } else { "cert" };
        return Err(k.err(T, missing, "a client certificate needs both cert and key"));
    }
    if c.password.is_some() && c.username.is_none() {
        return Err(k.err(T, "password", format!("requires {}", k.name(T, "username"))));
    }
    let mqtt = match c.mqtt.as_deref() {
        None => MqttVersion::V311,
        Some(s) => {
            MqttVersion::parse(s).ok_or_else(|| k.err(T, "mqtt", format!("must be \"3.1.1\" or \"5\" (got {s:?})")))?
        }
    };
    let keepalive_secs = c.keepalive.unwrap_or(30);
    if keepalive_secs == 0 {
        return Err(k.err(T, "keepalive", "must be at least 1 second (idle connections rely on PINGREQ)"));
    }
    let connect_timeout = c.connect_timeout.map(|s| s.0).unwrap_or(Duration::from_secs(10));
    if connect_timeout.is_zero() {
        return Err(k.err(T, "connect_timeout", "must be positive"));
    }
    let mut source_addrs = Vec::new();
    for a in c.source_addrs.unwrap_or_default() {
        let ip: IpAddr =
            a.trim().parse().map_err(|_| k.err(T, "source_addrs", format!("{a:?} is not an IP address")))?;
        source_addrs.push(ip);
    }
    Ok(Connection {
        host,
        port,
        tls,
        ca: c.ca,
        cert: c.cert,
        key: c.key,
        insecure: c.insecure.unwrap_or(false),
        username: c.username,
        password: c.password,
        mqtt,
        keepalive_secs,
        connect_timeout,
        source_addrs,
    })
}

fn check_rate(k: &Keys, rate: f64) -> Result<f64> {
    if !rate.is_finite() || rate < 0.0 {
        return Err(k.err("scenario", "rate", format!("must be a non-negative number (got {rate})")));
    }
    Ok(rate)
}

fn resolve_connect(k: &Keys, c: ConnectSpec) -> Result<ConnectLoad> {
    let connections = c.connections.unwrap_or(1000);
    if connections == 0 {
        return Err(k.err("scenario", "connections", "must be at least 1"));
    }
    Ok(ConnectLoad {
        connections,
        rate: check_rate(k, c.rate.unwrap_or(500.0))?,
        duration: c.duration.map(|s| s.0).unwrap_or(Duration::from_secs(10)),
        broker_pid: c.broker_pid,
    })
}

fn resolve_pubsub(k: &Keys, kind: PubSubKind, p: PubSubSpec) -> Result<PubSubLoad> {
    const S: &str = "scenario";
    if kind != PubSubKind::Shared && p.group.is_some() {
        return Err(k.err(S, "group", "only valid for the shared scenario"));
    }
    let (publishers, subscribers) = if kind == PubSubKind::P2p {
        for (key, set) in [("publishers", p.publishers.is_some()), ("subscribers", p.subscribers.is_some())] {
            if set {
                return Err(k.err(S, key, format!("p2p takes {} instead", k.name(S, "pairs"))));
            }
        }
        let n = p.pairs.unwrap_or(10);
        (n, n)
    } else {
        if p.pairs.is_some() {
            return Err(k.err(S, "pairs", "only valid for the p2p scenario"));
        }
        let (dp, ds) = match kind {
            PubSubKind::FanIn => (10, 1),
            PubSubKind::FanOut => (1, 10),
            _ => (10, 5),
        };
        (p.publishers.unwrap_or(dp), p.subscribers.unwrap_or(ds))
    };
    for (key, n) in [("publishers", publishers), ("subscribers", subscribers)] {
        if n == 0 {
            let key = if kind == PubSubKind::P2p { "pairs" } else { key };
            return Err(k.err(S, key, "must be at least 1"));
        }
    }
    let qos = p.qos.unwrap_or(1);
    if qos > 2 {
        return Err(k.err(S, "qos", format!("must be 0, 1 or 2 (got {qos})")));
    }
    let payload = p.payload.unwrap_or(64);
    if !(HEADER_LEN..=MAX_PAYLOAD).contains(&payload) {
        return Err(k.err(S, "payload", format!("must be {HEADER_LEN}..={MAX_PAYLOAD} bytes (got {payload})")));
    }
    let duration = p.duration.map(|s| s.0).unwrap_or(Duration::from_secs(10));
    if duration.is_zero() {
        return Err(k.err(S, "duration", "must be positive"));
    }
    let inflight = p.inflight.unwrap_or(100);
    if inflight == 0 {
        return Err(k.err(S, "inflight", "must be at least 1"));
    }
    let topic_prefix = p.topic_prefix.unwrap_or_else(|| "bench".to_string());
    if topic_prefix.is_empty() || topic_prefix.starts_with('$') || topic_prefix.contains(['+', '#', '\0']) {
        return Err(k.err(S, "topic_prefix", "must be non-empty, not start with $ and contain no + # or NUL"));
    }
    let group = p.group.unwrap_or_else(|| "loadtest".to_string());
    if group.is_empty() || group.contains(['/', '+', '#', '\0']) {
        return Err(k.err(S, "group", "must be non-empty and contain no / + # or NUL"));
    }
    Ok(PubSubLoad {
        kind,
        publishers,
        subscribers,
        qos,
        payload,
        rate: check_rate(k, p.rate.unwrap_or(10.0))?,
        duration,
        warmup: p.warmup.map(|s| s.0).unwrap_or(Duration::from_secs(1)),
        drain: p.drain.map(|s| s.0).unwrap_or(Duration::from_secs(5)),
        clean: p.clean.unwrap_or(true),
        inflight,
        topic_prefix,
        group,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> Result<Scenario> {
        Spec::from_toml("t.toml", text)?.resolve(Origin::File)
    }

    #[test]
    fn defaults_fill_a_minimal_file() {
        let s = file("[scenario]\nkind = \"fan-out\"\n").unwrap();
        assert_eq!(s.connection.port, 1883);
        assert_eq!(s.connection.mqtt, MqttVersion::V311);
        let Workload::PubSub(p) = &s.workload else { panic!("not pubsub") };
        assert_eq!((p.publishers, p.subscribers, p.qos, p.payload), (1, 10, 1, 64));
        assert_eq!(s.name, "fan-out");
        assert!(!s.run_id.is_empty());
    }

    #[test]
    fn tls_default_port_and_requirements() {
        let s = file("[connection]\ntls = true\n[scenario]\nkind = \"connect\"\n").unwrap();
        assert_eq!(s.connection.port, 8883);
        let e = file("[connection]\nca = \"x.pem\"\n[scenario]\nkind = \"connect\"\n").unwrap_err();
        assert_eq!(e.to_string(), "connection.ca: requires connection.tls");
        let e = file("[connection]\ntls = true\ncert = \"c\"\n[scenario]\nkind = \"connect\"\n").unwrap_err();
        assert!(e.to_string().starts_with("connection.key:"), "{e}");
    }

    #[test]
    fn invalid_values_name_the_key() {
        let cases = [
            ("kind = \"fan-in\"\nqos = 3", "scenario.qos"),
            ("kind = \"fan-in\"\npayload = 8", "scenario.payload"),
            ("kind = \"fan-in\"\npublishers = 0", "scenario.publishers"),
            ("kind = \"p2p\"\npublishers = 2", "scenario.publishers"),
            ("kind = \"p2p\"\npairs = 0", "scenario.pairs"),
            ("kind = \"fan-in\"\npairs = 2", "scenario.pairs"),
            ("kind = \"fan-out\"\ngroup = \"g\"", "scenario.group"),
            ("kind = \"shared\"\ngroup = \"a/b\"", "scenario.group"),
            ("kind = \"fan-in\"\nrate = -1.0", "scenario.rate"),
            ("kind = \"fan-in\"\nduration = 0", "scenario.duration"),
            ("kind = \"fan-in\"\ntopic_prefix = \"a/#\"", "scenario.topic_prefix"),
            ("kind = \"connect\"\nconnections = 0", "scenario.connections"),
        ];
        for (body, key) in cases {
            let e = file(&format!("[scenario]\n{body}\n")).unwrap_err();
            assert!(e.to_string().starts_with(&format!("{key}:")), "{body}: {e}");
        }
    }

    #[test]
    fn source_addrs_only_for_connect_and_must_parse() {
        let ok = file("[connection]\nsource_addrs = [\"127.0.0.2\"]\n[scenario]\nkind = \"connect\"\n").unwrap();
        assert_eq!(ok.connection.source_addrs, vec!["127.0.0.2".parse::<IpAddr>().unwrap()]);
        let e = file("[connection]\nsource_addrs = [\"127.0.0.2\"]\n[scenario]\nkind = \"p2p\"\n").unwrap_err();
        assert!(e.to_string().starts_with("connection.source_addrs:"), "{e}");
        let e = file("[connection]\nsource_addrs = [\"nope\"]\n[scenario]\nkind = \"connect\"\n").unwrap_err();
        assert!(e.to_string().contains("nope"), "{e}");
    }

    #[test]
    fn cli_origin_names_flags() {
        let spec = Spec {
            name: None,
            run_id: None,
            processes: Some(0),
            threads: None,
            connection: ConnectionSpec::default(),
            scenario: WorkloadSpec::Connect(ConnectSpec::default()),
        };
        assert_eq!(spec.resolve(Origin::Cli).unwrap_err().to_string(), "--processes: must be 1..=256 (got 0)");
        let spec = Spec {
            name: None,
            run_id: None,
            processes: None,
            threads: None,
            connection: ConnectionSpec { mqtt: Some("4.0".into()), ..Default::default() },
            scenario: WorkloadSpec::Connect(ConnectSpec::default()),
        };
        assert!(spec.resolve(Origin::Cli).unwrap_err().to_string().starts_with("--mqtt:"));
    }

    #[test]
    fn topics_embed_run_and_index() {
        let s = file("run_id = \"r1\"\n[scenario]\nkind = \"shared\"\ngroup = \"g\"\n").unwrap();
        let Workload::PubSub(p) = &s.workload else { panic!("not pubsub") };
        assert_eq!(p.publish_topic(&s.run_id, 3), "bench/r1/shared/3");
        assert_eq!(p.subscribe_filter(&s.run_id, 0), "$share/g/bench/r1/shared/+");
        assert_eq!(s.client_id('p', 3), "flt-r1-p3");
    }
}
