//! A FleetMQ cluster of real processes for one test: shard and front nodes of the same `fleetmq`
//! binary, started from TOML written here.
//!
//! Members must know each other's addresses before they start, so this harness picks them: each
//! cluster gets its own loopback address `127.0.0.x` (x from 10 to 249, by process and counter)
//! and asks the kernel for distinct free ports on it (bind port 0 for each, read the ports, then
//! release them all). Nothing else binds that address, so the ports stay free until the nodes
//! bind them.

use crate::broker::{merge, Broker};
use crate::raw::RawClient;
use crate::tempdir::TempDir;
use crate::wire::{self, prop, Connect, Props};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

static CLUSTERS: AtomicU32 = AtomicU32::new(0);

/// A running cluster.
pub struct Cluster {
    pub shards: Vec<Broker>,
    pub fronts: Vec<Broker>,
    pub shard_ids: Vec<String>,
    /// Client addresses of the fronts, in order.
    pub front_addrs: Vec<SocketAddr>,
    /// Operations endpoints (`/ready`) of the fronts, when started behind a load balancer.
    pub front_metrics: Vec<SocketAddr>,
    /// The loopback address this cluster's nodes use.
    pub ip: Ipv4Addr,
    shard_addrs: Vec<SocketAddr>,
    /// Shards (by id) marked as leaving.
    leaving: Vec<String>,
    extra: String,
    behind_proxy: bool,
}

/// A loopback address no other cluster of this test run uses.
fn cluster_ip() -> Ipv4Addr {
    let n = CLUSTERS.fetch_add(1, Ordering::Relaxed);
    let x = 10 + (std::process::id().wrapping_mul(31).wrapping_add(n * 7)) % 240;
    Ipv4Addr::new(127, 0, 0, x as u8)
}

/// `n` distinct free ports on `ip`: every reservation is held until all are taken, so the kernel
/// cannot hand the same port out twice.
fn free_ports(ip: Ipv4Addr, n: usize) -> Vec<SocketAddr> {
    let held: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind((ip, 0)).unwrap_or_else(|e| panic!("cannot bind {ip}:0: {e}")))
        .collect();
    held.iter().map(|l| l.local_addr().unwrap_or_else(|e| panic!("local_addr: {e}"))).collect()
}

impl Cluster {
    /// Starts `shards` shard nodes (`shard-1`...) and `fronts` front nodes (`front-1`...); `extra`
    /// is TOML merged over every node's config (e.g. `[cluster]` or `[storage]` keys).
    pub fn start(shards: usize, fronts: usize, extra: &str) -> Cluster {
        Cluster::start_with(shards, fronts, extra, false)
    }

    /// Like [`Cluster::start`], with fronts that expect a PROXY v2 header on their client listener
    /// and serve `/ready` (for a load balancer in front of them).
    pub fn start_behind_proxy(shards: usize, fronts: usize, extra: &str) -> Cluster {
        Cluster::start_with(shards, fronts, extra, true)
    }

    fn start_with(shards: usize, fronts: usize, extra: &str, behind_proxy: bool) -> Cluster {
        let ip = cluster_ip();
        let shard_ids: Vec<String> = (1..=shards).map(|i| format!("shard-{i}")).collect();
        let mut ports = free_ports(ip, shards + fronts * if behind_proxy { 2 } else { 1 });
        let shard_addrs: Vec<SocketAddr> = ports.drain(..shards).collect();
        let front_addrs: Vec<SocketAddr> = ports.drain(..fronts).collect();
        let front_metrics: Vec<SocketAddr> = ports;
        let mut cluster = Cluster {
            shards: Vec::new(),
            fronts: Vec::new(),
            shard_ids,
            front_addrs,
            front_metrics,
            ip,
            shard_addrs,
            leaving: Vec::new(),
            extra: extra.to_string(),
            behind_proxy,
        };
        for i in 0..shards {
            let dir = TempDir::new(&format!("fleetmq-{}", cluster.shard_ids[i]));
            let config = cluster.shard_config(i, dir.path());
            cluster.shards.push(Broker::start_exact(dir, &config, None));
        }
        for i in 0..fronts {
            let dir = TempDir::new(&format!("fleetmq-front-{}", i + 1));
            let config = cluster.front_config(i, dir.path());
            cluster.fronts.push(Broker::start_exact(dir, &config, None));
        }
        cluster.await_shard_links();
        cluster
    }

    /// The `[[cluster.shard]]` and `[[cluster.front]]` lists as they are now.
    fn members(&self) -> String {
        let mut members = String::new();
        for (id, addr) in self.shard_ids.iter().zip(&self.shard_addrs) {
            members.push_str(&format!("[[cluster.shard]]\nid = \"{id}\"\naddr = \"{addr}\"\n"));
            if self.leaving.contains(id) {
                members.push_str("leaving = true\n");
            }
        }
        for (i, addr) in self.front_addrs.iter().enumerate() {
            members.push_str(&format!("[[cluster.front]]\nid = \"front-{}\"\naddr = \"{addr}\"\n", i + 1));
        }
        members
    }

    fn shard_config(&self, i: usize, dir: &Path) -> String {
        self.node_config(&self.shard_ids[i], "shard", dir, None, None)
    }

    fn front_config(&self, i: usize, dir: &Path) -> String {
        let id = format!("front-{}", i + 1);
        self.node_config(&id, "front", dir, Some(self.front_addrs[i]), self.front_metrics.get(i).copied())
    }

    fn node_config(
        &self,
        id: &str,
        role: &str,
        dir: &Path,
        listener: Option<SocketAddr>,
        metrics: Option<SocketAddr>,
    ) -> String {
        let engine = std::env::var("FLEETMQ_TEST_ENGINE").unwrap_or_else(|_| "memory".into());
        let mut text = format!(
            "[node]\nid = \"{id}\"\nrole = \"{role}\"\ndata_dir = {data:?}\n\
             [log]\nlevel = \"fleetmq=debug,info\"\n\
             [storage]\nengine = {engine:?}\n{sync}\
             [cluster]\nheartbeat_ms = 200\nheartbeat_timeout_ms = 1000\n{members}",
            data = dir.join("data").display().to_string(),
            sync = crate::broker::durable_sync(&engine),
            members = self.members(),
        );
        if let Some(addr) = listener {
            text.push_str(&format!("[[listener]]\nkind = \"tcp\"\nbind = \"{addr}\"\n"));
            if self.behind_proxy {
                text.push_str("proxy_protocol = \"v2\"\n");
            }
        }
        if let Some(addr) = metrics {
            text.push_str(&format!("[metrics]\nbind = \"{addr}\"\n"));
        }
        let mut table: toml::Table = text.parse().unwrap_or_else(|e| panic!("cluster config: {e}\n{text}"));
        let extra: toml::Table = self.extra.parse().unwrap_or_else(|e| panic!("extra config: {e}\n{}", self.extra));
        merge(&mut table, extra);
        if role == "front" {
            // A front stores nothing, whatever the test asks of the shards.
            if let Some(toml::Value::Table(storage)) = table.get_mut("storage") {
                storage.insert("engine".into(), toml::Value::String("memory".into()));
            }
        }
        table.to_string()
    }

    /// Changes the shard set the documented way: the new shard starts first, then every other
    /// shard and then every front restarts on the new member list (kill -9 and start on the same
    /// data directory). Returns once all shards are linked again.
    pub fn add_shard(&mut self) {
        let id = format!("shard-{}", self.shard_ids.len() + 1);
        self.shard_ids.push(id.clone());
        self.shard_addrs.push(free_ports(self.ip, 1)[0]);
        let dir = TempDir::new(&format!("fleetmq-{id}"));
        let config = self.shard_config(self.shard_ids.len() - 1, dir.path());
        self.shards.push(Broker::start_exact(dir, &config, None));
        self.reconfigure(self.shards.len() - 1);
    }

    /// Marks shard `i` as leaving and rolls the new member list out like [`Cluster::add_shard`].
    pub fn retire_shard(&mut self, i: usize) {
        self.leaving.push(self.shard_ids[i].clone());
        self.reconfigure(usize::MAX);
    }

    /// Restarts every shard (kill -9) on its current config and waits for the links.
    pub fn restart_shards(&mut self) {
        self.reconfigure_nodes(usize::MAX, false);
    }

    /// Marks shard `i` as leaving on the shards only, the fronts keep the old member list (a
    /// membership change half rolled out).
    pub fn retire_shard_on_shards_only(&mut self, i: usize) {
        self.leaving.push(self.shard_ids[i].clone());
        self.reconfigure_nodes(usize::MAX, false);
    }

    /// Restarts every shard but `skip`, then every front, on the current member list.
    fn reconfigure(&mut self, skip: usize) {
        self.reconfigure_nodes(skip, true);
    }

    fn reconfigure_nodes(&mut self, skip: usize, fronts: bool) {
        // marks[i][j]: shard i's log length when shard j restarted; a link i → j counts only if
        // logged after that (an earlier one died with j).
        let n = self.shards.len();
        let mut marks: Vec<Vec<usize>> = self.shards.iter().map(|s| vec![s.log().len(); n]).collect();
        for j in (0..n).filter(|j| *j != skip) {
            for (i, shard) in self.shards.iter().enumerate() {
                marks[i][j] = shard.log().len();
            }
            let config = self.shard_config(j, self.shards[j].dir());
            self.shards[j].rewrite_config(&config);
            self.shards[j].restart();
        }
        for i in (0..self.fronts.len()).filter(|_| fronts) {
            let config = self.front_config(i, self.fronts[i].dir());
            self.fronts[i].rewrite_config(&config);
            self.fronts[i].restart();
        }
        self.await_links_since(&marks);
    }

    /// Waits until every shard has its link to every other shard up (each logs `shard link up`),
    /// so routes announced from now on reach every shard before the SUBACK.
    pub fn await_shard_links(&self) {
        self.await_links_since(&vec![vec![0; self.shards.len()]; self.shards.len()]);
    }

    /// Like [`Cluster::await_shard_links`], for a link i → j logged past byte `marks[i][j]` of
    /// shard i's log.
    fn await_links_since(&self, marks: &[Vec<usize>]) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        for (i, shard) in self.shards.iter().enumerate() {
            for (j, peer) in self.shard_ids.iter().enumerate() {
                if i == j {
                    continue;
                }
                let needle = format!("shard link up peer={peer}");
                while !shard.log().get(marks[i][j]..).unwrap_or_default().contains(&needle) {
                    assert!(std::time::Instant::now() < deadline, "{} never linked to {peer}", self.shard_ids[i]);
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
            }
        }
    }

    /// A free address on the cluster's own loopback address (for a load balancer in front of it).
    pub fn spare_addr(&self) -> SocketAddr {
        free_ports(self.ip, 1)[0]
    }

    /// Client address of front `i`.
    pub fn front(&self, i: usize) -> SocketAddr {
        self.front_addrs[i]
    }

    /// Index of the shard whose log shows `client_id` connecting through a front, if exactly one.
    pub fn shard_of(&self, client_id: &str) -> Option<usize> {
        let needle = format!("client_id={client_id} ");
        let hits: Vec<usize> = self
            .shards
            .iter()
            .enumerate()
            .filter(|(_, s)| s.log().lines().any(|l| l.contains("through a front") && l.contains(&needle)))
            .map(|(i, _)| i)
            .collect();
        match hits.as_slice() {
            [one] => Some(*one),
            _ => None,
        }
    }
}

/// Bound for one expected event.
const WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// A 5.0 CONNECT for a persistent session (expiry 300 s).
pub fn persistent(id: &str) -> Connect {
    let mut c = Connect::v5(id);
    c.clean = false;
    c.props = Props::new().u32(prop::SESSION_EXPIRY, 300);
    c
}

impl Cluster {
    /// A client id the ring places on shard `shard`, found by connecting candidates through the
    /// first front.
    pub async fn id_on_shard(&self, shard: usize, prefix: &str) -> String {
        for i in 0..200 {
            let id = format!("{prefix}-{i}");
            let mut cl = RawClient::v5(self.front(0), &id).await;
            cl.send(&wire::disconnect_v5(0, &Props::new())).await;
            cl.expect_closed(WAIT).await;
            if self.shard_of(&id) == Some(shard) {
                return id;
            }
        }
        panic!("no client id with prefix {prefix} lands on shard {shard}");
    }
}

/// Subscribes a fresh client on `front` to `filters` and collects the retained messages it gets,
/// as sorted `topic=payload` strings.
pub async fn retained_seen(front: SocketAddr, id: &str, filters: &[&str]) -> Vec<String> {
    let mut cl = RawClient::v5(front, id).await;
    let want: Vec<(&str, u8)> = filters.iter().map(|f| (*f, 1)).collect();
    assert_eq!(cl.subscribe(1, &want).await, vec![1; filters.len()]);
    let mut got: Vec<String> = cl
        .receive_until_quiet(std::time::Duration::from_millis(800))
        .await
        .into_iter()
        .map(|p| {
            assert!(p.retain, "a retained message on subscribe has the retain flag");
            format!("{}={}", p.topic, String::from_utf8_lossy(&p.payload))
        })
        .collect();
    got.sort();
    got
}

/// Connects until the CONNACK is a success (the front may still see the shard as down, 0x88);
/// returns the client and Session Present.
pub async fn connect_when_back(front: SocketAddr, connect: &Connect) -> (RawClient, bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (cl, ack) = RawClient::handshake(front, connect).await;
        if ack.code == 0 {
            return (cl, ack.session_present);
        }
        assert_eq!(ack.code, 0x88, "only 'server unavailable' is expected while the shard is down");
        assert!(std::time::Instant::now() < deadline, "shard did not come back");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// How a [`qos1_load`] ended.
#[derive(Debug, Default)]
pub struct LoadEnd {
    /// Payloads acknowledged with a success code, in acknowledgement order.
    pub acked: Vec<String>,
    /// The reason of the DISCONNECT that ended it, if one did.
    pub disconnect: Option<u8>,
}

/// Publishes QoS 1 messages `{tag}-{n}` (n from 0 below `count`) to `topic` with up to `window`
/// unacknowledged, until all are acknowledged or the connection ends (DISCONNECT, close, 5 s of
/// silence). `progress` counts acknowledgements as they come, so a test can act mid-load.
pub async fn qos1_load(
    cl: &mut RawClient,
    topic: &str,
    tag: &str,
    count: u32,
    window: usize,
    progress: &std::sync::atomic::AtomicUsize,
) -> LoadEnd {
    use crate::parse::{self, kind};
    let mut in_flight = std::collections::VecDeque::new();
    let mut end = LoadEnd::default();
    let mut next = 0u32;
    loop {
        while in_flight.len() < window && next < count {
            let pid = (next % 60_000) as u16 + 1;
            let payload = format!("{tag}-{next}");
            if cl.try_send(&wire::Publish::new(cl.is_v5(), topic, &payload).qos(1, pid).encode()).await.is_err() {
                return end;
            }
            in_flight.push_back((pid, payload));
            next += 1;
        }
        if in_flight.is_empty() {
            return end;
        }
        let Ok(p) = cl.try_read_packet(WAIT).await else { return end };
        if p.kind() == kind::DISCONNECT {
            end.disconnect = parse::disconnect(&p).ok().map(|(reason, _)| reason);
            return end;
        }
        if p.kind() != kind::PUBACK {
            continue;
        }
        let ack = parse::ack(&p).unwrap_or_else(|e| panic!("bad PUBACK: {e}"));
        let at = in_flight.iter().position(|(pid, _)| *pid == ack.pid).unwrap_or_else(|| panic!("PUBACK for {ack:?}"));
        let (_, payload) = in_flight.remove(at).unwrap_or_default();
        if ack.reason < 0x80 {
            end.acked.push(payload);
            progress.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Every PUBLISH payload `cl` receives (each acknowledged, QoS 1) until its connection ends or
/// nothing comes for `quiet`.
pub async fn collect_qos1(cl: &mut RawClient, quiet: std::time::Duration) -> Vec<String> {
    use crate::parse::{self, kind};
    let mut got = Vec::new();
    while let Ok(p) = cl.try_read_packet(quiet).await {
        if p.kind() != kind::PUBLISH {
            continue;
        }
        let p = parse::publish(&p, cl.is_v5()).unwrap_or_else(|e| panic!("bad PUBLISH: {e}"));
        got.push(String::from_utf8_lossy(&p.payload).into_owned());
        if cl.try_send(&wire::puback(p.pid.unwrap_or(0))).await.is_err() {
            break;
        }
    }
    got
}
