//! End-to-end: the real fleetmq broker (started by the `fleetmq-tests` harness on 127.0.0.1 port 0)
//! under a short run of every scenario kind, through the library API and through the binary
//! (`--json`, `--processes`, bad input). Counts are small (5 publishers × 50 messages) so the
//! whole file stays well under a minute.

use fleetmq_loadtest::report::{self, Report};
use fleetmq_loadtest::run::{local, Control, Live};
use fleetmq_loadtest::scenario::spec::{Origin, Spec};
use fleetmq_loadtest::stats::Verdict;
use fleetmq_tests::{Broker, TempDir};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

const TOOL: &str = env!("CARGO_BIN_EXE_fleetmq-loadtest");

/// 50 messages per publisher: 100 msg/s for 0.5 s, no warm-up.
const FLOW: &str = "rate = 100\nduration = \"500ms\"\nwarmup = 0\ndrain = \"5s\"\npayload = 48";

async fn run(broker: &Broker, connection: &str, scenario: &str) -> Report {
    let port = broker.tcp_addr().port();
    let text = format!("run_id = \"e2e{port}\"\n[connection]\nport = {port}\n{connection}\n[scenario]\n{scenario}\n");
    let scn = Spec::from_toml("e2e.toml", &text)
        .and_then(|s| s.resolve(Origin::File))
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
    let bounded = tokio::time::timeout(
        Duration::from_secs(30),
        local::run_local(&scn, Control::default(), Arc::new(Live::default())),
    );
    let raw = bounded.await.expect("scenario did not finish within 30 s").unwrap_or_else(|e| panic!("run failed: {e}"));
    report::build(&scn, &raw).unwrap()
}

fn assert_exact(r: &Report, sent: u64, receivers: u64) {
    let p = r.pubsub.as_ref().expect("pub/sub report");
    assert_eq!(p.sent, sent, "{r:#?}");
    assert_eq!(p.completed, sent, "every publish written/acknowledged");
    let e = &p.exactness;
    assert_eq!(e.expected, sent * receivers);
    assert_eq!(e.received, e.expected, "{e:?}");
    assert_eq!((e.lost, e.unexpected), (0, 0), "{e:?}");
    if p.qos == 2 {
        assert_eq!(e.duplicates, 0, "{e:?}");
    }
    assert_eq!(p.latency.count, sent * receivers, "every first reception timed");
    assert!(p.latency.p50_us > 0 && p.latency.max_us < 5_000_000, "{:?}", p.latency);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(r.verdict, Verdict::Pass);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_in_qos1_v311_delivers_everything_to_every_subscriber() {
    let b = Broker::start("");
    let r = run(&b, "", &format!("kind = \"fan-in\"\npublishers = 5\nsubscribers = 2\nqos = 1\n{FLOW}")).await;
    assert_exact(&r, 250, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_qos0_v5_reaches_all_subscribers() {
    let b = Broker::start("");
    let r =
        run(&b, "mqtt = \"5\"", &format!("kind = \"fan-out\"\npublishers = 2\nsubscribers = 3\nqos = 0\n{FLOW}")).await;
    assert_exact(&r, 100, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p2p_qos2_v5_persistent_sessions_exactly_once() {
    let b = Broker::start("");
    let r = run(&b, "mqtt = \"5\"", &format!("kind = \"p2p\"\npairs = 5\nqos = 2\nclean = false\n{FLOW}")).await;
    assert_exact(&r, 250, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_group_qos2_delivers_each_message_to_one_member() {
    let b = Broker::start("");
    let r = run(&b, "", &format!("kind = \"shared\"\npublishers = 5\nsubscribers = 3\nqos = 2\n{FLOW}")).await;
    assert_exact(&r, 250, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_opens_holds_and_measures_broker_memory() {
    let b = Broker::start("");
    let scenario =
        format!("kind = \"connect\"\nconnections = 60\nrate = 0\nduration = \"300ms\"\nbroker_pid = {}", b.pid());
    let r = run(&b, "source_addrs = [\"127.0.0.1\", \"127.0.0.2\"]", &scenario).await;
    let c = r.connect.as_ref().expect("connect report");
    assert_eq!((c.attempted, c.connected, c.failed, c.held), (60, 60, 0, 60), "{c:#?}");
    assert!(c.dropped.is_empty(), "{:?}", c.dropped);
    assert_eq!(c.latency.count, 60);
    assert!(c.broker_rss_before.is_some() && c.broker_rss_after.is_some());
    assert!(c.broker_bytes_per_connection.is_some());
    assert_eq!(r.verdict, Verdict::Pass);
}

fn tool(args: &[&str]) -> Output {
    Command::new(TOOL).args(args).output().unwrap_or_else(|e| panic!("cannot run {TOOL}: {e}"))
}

fn json(out: &Output) -> serde_json::Value {
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).unwrap_or_else(|e| {
        panic!("stdout is not one JSON object ({e}):\n{text}\nstderr:\n{}", String::from_utf8_lossy(&out.stderr))
    })
}

#[test]
fn binary_json_with_worker_processes_merges_results() {
    let b = Broker::start("");
    let port = b.tcp_addr().port().to_string();
    let out = tool(&[
        "--port",
        &port,
        "--processes",
        "2",
        "--json",
        "fan-in",
        "-P",
        "4",
        "-S",
        "2",
        "--qos",
        "1",
        "--rate",
        "100",
        "--duration",
        "500ms",
        "--warmup",
        "0",
        "--drain",
        "5s",
    ]);
    let v = json(&out);
    assert!(out.status.success(), "{v}");
    assert_eq!(v["verdict"], "PASS", "{v}");
    assert_eq!(v["pubsub"]["sent"], 200);
    assert_eq!(v["pubsub"]["exactness"]["received"], 400);
    assert_eq!(v["pubsub"]["exactness"]["lost"], 0);
    assert_eq!(v["processes"].as_array().map(Vec::len), Some(2), "one CPU record per worker");
    assert!(v["pubsub"]["latency"]["p99_us"].as_u64().is_some_and(|p| p > 0));
}

#[test]
fn binary_connect_scenario_over_processes() {
    let b = Broker::start("");
    let port = b.tcp_addr().port().to_string();
    let pid = b.pid().to_string();
    let out = tool(&[
        "--port",
        &port,
        "--processes",
        "2",
        "--json",
        "--source-addrs",
        "127.0.0.1,127.0.0.3",
        "connect",
        "-n",
        "40",
        "--rate",
        "400",
        "--duration",
        "200ms",
        "--broker-pid",
        &pid,
    ]);
    let v = json(&out);
    assert!(out.status.success(), "{v}");
    assert_eq!(v["connect"]["connected"], 40, "{v}");
    assert_eq!(v["connect"]["failed"], 0);
    assert!(v["connect"]["broker_rss_after"].as_u64().is_some());
}

fn one_line_error(out: &Output, code: i32, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "stderr: {err}");
    assert_eq!(err.trim().lines().count(), 1, "expected one line on stderr, got:\n{err}");
    assert!(err.starts_with("error: ") && err.contains(needle), "{err}");
}

#[test]
fn unreachable_broker_is_a_one_line_error() {
    let b = Broker::start("");
    let port = b.tcp_addr().port();
    drop(b);
    let port = port.to_string();
    one_line_error(&tool(&["--port", &port, "fan-in", "--duration", "1s"]), 1, "cannot connect to 127.0.0.1");
    one_line_error(&tool(&["--port", &port, "connect", "-n", "5"]), 1, "cannot connect to 127.0.0.1");
}

#[test]
fn tls_failure_is_a_one_line_error_and_ca_makes_it_work() {
    let dir = TempDir::new("fleetmq-loadtest-tls");
    fleetmq_tests::cli::certs(dir.path(), None);
    let b = Broker::start_in(
        dir,
        "[[listener]]\nkind = \"tls\"\nbind = \"127.0.0.1:0\"\ncert = \"$DIR/server.pem\"\nkey = \"$DIR/server.key\"\n",
    );
    let port = b.tls_addr().port().to_string();
    let ca = b.dir().join("ca.pem").display().to_string();
    one_line_error(&tool(&["--port", &port, "--tls", "--json", "connect", "-n", "2"]), 1, "tls:");
    let out = tool(&["--port", &port, "--tls", "--ca", &ca, "--json", "connect", "-n", "3", "--duration", "100ms"]);
    assert_eq!(json(&out)["connect"]["connected"], 3);
    let out = tool(&[
        "--port",
        &port,
        "--tls",
        "--insecure",
        "--json",
        "p2p",
        "-n",
        "2",
        "--duration",
        "200ms",
        "--warmup",
        "0",
    ]);
    assert_eq!(json(&out)["verdict"], "PASS");
}

#[test]
fn invalid_scenarios_name_the_key_and_exit_2() {
    let dir = TempDir::new("fleetmq-loadtest-bad");
    let f = dir.write("bad.toml", "[scenario]\nkind = \"fan-in\"\npublishers = 2\nqoss = 1\n");
    one_line_error(&tool(&["run", &f.display().to_string()]), 2, "qoss");
    let f = dir.write("bad2.toml", "[scenario]\nkind = \"shared\"\nqos = 7\n");
    one_line_error(&tool(&["run", &f.display().to_string()]), 2, "scenario.qos");
    one_line_error(&tool(&["fan-in", "--payload", "8"]), 2, "--payload");
    one_line_error(&tool(&["--plot", "x.png", "fan-in"]), 2, ".svg");
}
