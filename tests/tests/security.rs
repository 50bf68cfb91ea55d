//! Security: TLS with certificates from `fleetmq certs`, mutual TLS, client-certificate CN as
//! username, password files from `fleetmq passwd`, anonymous access, and ACL enforcement including
//! `%u` / `%c` substitution.

use fleetmq_tests::parse::kind;
use fleetmq_tests::v4::{self, V4};
use fleetmq_tests::wire::{Connect, Publish};
use fleetmq_tests::{cli, unique, Broker, RawClient, TempDir};
use rumqttc::{MqttOptions, QoS, SubscribeReasonCode, TlsConfiguration, Transport};
use std::net::SocketAddr;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(5);
const QUIET: Duration = Duration::from_millis(800);

const TLS_LISTENER: &str =
    "[[listener]]\nkind = \"tls\"\ncert = \"$DIR/certs/server.pem\"\nkey = \"$DIR/certs/server.key\"\n";

fn with_certs(client_cn: Option<&str>) -> TempDir {
    let dir = TempDir::new("fleetmq-sec");
    cli::certs(&dir.join("certs"), client_cn);
    dir
}

fn tls_options(host: &str, addr: SocketAddr, ca: Vec<u8>, client: Option<(Vec<u8>, Vec<u8>)>) -> MqttOptions {
    let mut o = MqttOptions::new(unique("tls"), host, addr.port());
    o.set_keep_alive(Duration::from_secs(30));
    o.set_transport(Transport::tls_with_config(TlsConfiguration::Simple { ca, alpn: None, client_auth: client }));
    o
}

fn client_pair(dir: &TempDir) -> (Vec<u8>, Vec<u8>) {
    (cli::read(&dir.join("certs/client.pem")), cli::read(&dir.join("certs/client.key")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_listener_serves_clients_that_trust_the_ca() {
    let dir = with_certs(None);
    let ca = cli::read(&dir.join("certs/ca.pem"));
    let b = Broker::start_in(dir, TLS_LISTENER);
    let topic = unique("secure");
    let mut sub = v4::connect(tls_options("localhost", b.tls_addr(), ca, None))
        .await
        .expect("TLS connection with the generated CA");
    sub.subscribe_ok(&topic, QoS::AtLeastOnce).await;
    let mut plain = v4::v4_client(b.tcp_addr(), &unique("plain"), true).await;
    plain.publish(&topic, QoS::AtLeastOnce, false, "over tls").await;
    assert_eq!(sub.wait_for_publishes(1, WAIT).await[0].payload, "over tls");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_connection_fails_without_trusting_the_ca() {
    let dir = with_certs(None);
    let stranger = dir.join("stranger");
    cli::certs(&stranger, None);
    let wrong_ca = cli::read(&stranger.join("ca.pem"));
    let b = Broker::start_in(dir, TLS_LISTENER);
    let result = v4::connect(tls_options("localhost", b.tls_addr(), wrong_ca, None)).await;
    assert!(result.is_err(), "connected although the server certificate is not trusted");
}

fn mtls_listener(cn_as_username: bool) -> String {
    format!("{TLS_LISTENER}client_ca = \"$DIR/certs/ca.pem\"\ncn_as_username = {cn_as_username}\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_requires_a_client_certificate() {
    let dir = with_certs(None);
    let ca = cli::read(&dir.join("certs/ca.pem"));
    let pair = client_pair(&dir);
    let b = Broker::start_in(dir, &mtls_listener(false));
    let ok = v4::connect(tls_options("127.0.0.1", b.tls_addr(), ca.clone(), Some(pair))).await;
    assert!(ok.is_ok(), "client certificate refused: {:?}", ok.err());
    let anonymous = v4::connect(tls_options("127.0.0.1", b.tls_addr(), ca, None)).await;
    assert!(anonymous.is_err(), "connected without a client certificate");
}

fn acl_broker(dir: TempDir, acl: &str, extra: &str) -> Broker {
    dir.write("acl", acl);
    Broker::start_in(dir, &format!("[auth]\nallow_anonymous = true\nacl_file = \"$DIR/acl\"\n{extra}"))
}

fn granted(codes: &[SubscribeReasonCode]) -> bool {
    codes == [SubscribeReasonCode::Success(QoS::AtLeastOnce)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_cn_becomes_the_username() {
    let dir = with_certs(Some("dev-42"));
    let ca = cli::read(&dir.join("certs/ca.pem"));
    let pair = client_pair(&dir);
    let b = acl_broker(dir, "allow pubsub user:dev-42 fleet/dev-42/#\n", &mtls_listener(true));
    let mut device: V4 =
        v4::connect(tls_options("localhost", b.tls_addr(), ca, Some(pair))).await.expect("mTLS connection");
    assert!(granted(&device.subscribe("fleet/dev-42/cmd", QoS::AtLeastOnce).await));
    assert!(!granted(&device.subscribe("fleet/dev-43/cmd", QoS::AtLeastOnce).await));
    let mut anon = v4::v4_client(b.tcp_addr(), &unique("anon"), true).await;
    assert!(
        !granted(&anon.subscribe("fleet/dev-42/cmd", QoS::AtLeastOnce).await),
        "the ACL grants only user dev-42, so an anonymous client must be refused"
    );
}

fn login(proto_v5: bool, user: Option<&str>, password: Option<&str>) -> Connect {
    let mut c = if proto_v5 { Connect::v5(&unique("login")) } else { Connect::v4(&unique("login")) };
    c.username = user.map(str::to_string);
    c.password = password.map(|p| p.as_bytes().to_vec());
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_file_authenticates_and_refuses_anonymous_clients() {
    let dir = TempDir::new("fleetmq-pw");
    cli::passwd(&dir.join("passwords"), "alice", "wonderland");
    cli::passwd(&dir.join("passwords"), "bob", "builder");
    let b = Broker::start_in(dir, "[auth]\nallow_anonymous = false\npassword_file = \"$DIR/passwords\"\n");
    let cases: [(bool, Option<&str>, Option<&str>, u8); 8] = [
        (true, Some("alice"), Some("wonderland"), 0x00),
        (true, Some("bob"), Some("builder"), 0x00),
        (true, Some("alice"), Some("builder"), 0x86),
        (true, Some("mallory"), Some("x"), 0x86),
        (true, None, None, 0x87),
        (false, Some("alice"), Some("wonderland"), 0),
        (false, Some("alice"), Some("nope"), 4),
        (false, None, None, 5),
    ];
    for (v5, user, password, code) in cases {
        let (mut c, ack) = RawClient::handshake(b.tcp_addr(), &login(v5, user, password)).await;
        assert_eq!(ack.code, code, "v5={v5} user={user:?} password={password:?}");
        if code != 0 {
            c.expect_closed(WAIT).await;
        }
    }
    let mut opts = v4::options(b.tcp_addr(), &unique("rumqttc"), true);
    opts.set_credentials("bob", "builder");
    assert!(v4::connect(opts).await.is_ok(), "a real client with the right password");
}

const ACL: &str = "\
# action  access     who            topic-filter
allow     subscribe  all            acl/#
allow     publish    all            acl/open/#
deny      subscribe  all            secret/#
allow     pubsub     user:alice     sensors/%u/#
allow     pubsub     all            devices/%c/#
";

async fn acl_setup() -> Broker {
    let dir = TempDir::new("fleetmq-acl");
    cli::passwd(&dir.join("passwords"), "alice", "wonderland");
    acl_broker(dir, ACL, "password_file = \"$DIR/passwords\"\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_subscriptions_get_failure_codes() {
    let b = acl_setup().await;
    let mut c5 = RawClient::v5(b.tcp_addr(), &unique("sub5")).await;
    let codes = c5.subscribe(1, &[("acl/x", 1), ("secret/x", 1), ("elsewhere", 1)]).await;
    assert_eq!(codes, vec![0x01, 0x87, 0x87], "allowed, denied, unmatched (5.0)");
    let mut c4 = RawClient::v4(b.tcp_addr(), &unique("sub4")).await;
    let codes = c4.subscribe(1, &[("acl/x", 1), ("secret/x", 1), ("elsewhere", 1)]).await;
    assert_eq!(codes, vec![0x01, 0x80, 0x80], "allowed, denied, unmatched (3.1.1)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_denied_publish_is_acked_0x87_and_not_delivered() {
    let b = acl_setup().await;
    let mut sub = RawClient::v4(b.tcp_addr(), &unique("sub")).await;
    sub.subscribe(1, &[("acl/#", 1)]).await;
    let mut p = RawClient::v5(b.tcp_addr(), &unique("pub5")).await;
    assert_eq!(p.publish(&Publish::new(true, "acl/closed/a", b"no").qos(1, 1)).await, 0x87);
    p.send(&Publish::new(true, "acl/closed/b", b"no").qos(2, 2).encode()).await;
    assert_eq!(p.expect_ack(kind::PUBREC, 2).await, 0x87, "PUBREC for a denied QoS 2 publish");
    sub.expect_no_publish(QUIET).await;
    assert!(p.publish(&Publish::new(true, "acl/open/a", b"yes").qos(1, 3)).await < 0x80);
    assert_eq!(sub.read_publish(WAIT).await.payload, b"yes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v311_denied_publish_is_acked_but_not_delivered() {
    let b = acl_setup().await;
    let mut sub = RawClient::v4(b.tcp_addr(), &unique("sub")).await;
    sub.subscribe(1, &[("acl/#", 1)]).await;
    let mut p = RawClient::v4(b.tcp_addr(), &unique("pub4")).await;
    assert_eq!(p.publish(&Publish::new(false, "acl/closed/a", b"no").qos(1, 1)).await, 0);
    sub.expect_no_publish(QUIET).await;
    p.publish(&Publish::new(false, "acl/open/a", b"yes").qos(1, 2)).await;
    assert_eq!(sub.read_publish(WAIT).await.payload, b"yes", "the connection stays usable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn username_substitution_limits_a_user_to_their_own_tree() {
    let b = acl_setup().await;
    let alice = || login(true, Some("alice"), Some("wonderland"));
    let mut reader = RawClient::connect_ok(b.tcp_addr(), &alice()).await;
    assert_eq!(reader.subscribe(1, &[("sensors/alice/#", 1), ("sensors/bob/#", 1)]).await, vec![1, 0x87]);
    let mut writer = RawClient::connect_ok(b.tcp_addr(), &alice()).await;
    assert!(writer.publish(&Publish::new(true, "sensors/alice/t", b"21").qos(1, 1)).await < 0x80);
    assert_eq!(writer.publish(&Publish::new(true, "sensors/bob/t", b"22").qos(1, 2)).await, 0x87);
    assert_eq!(reader.read_publish(WAIT).await.payload, b"21");
    let mut anon = RawClient::v5(b.tcp_addr(), &unique("anon")).await;
    assert_eq!(anon.subscribe(1, &[("sensors/alice/#", 1)]).await, vec![0x87]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_id_substitution_limits_a_client_to_its_own_tree() {
    let b = acl_setup().await;
    let mut dev = RawClient::v5(b.tcp_addr(), "dev-1").await;
    assert_eq!(dev.subscribe(1, &[("devices/dev-1/#", 1), ("devices/dev-2/#", 1)]).await, vec![1, 0x87]);
    assert!(dev.publish(&Publish::new(true, "devices/dev-1/up", b"hi").qos(1, 1)).await < 0x80);
    assert_eq!(dev.read_publish(WAIT).await.payload, b"hi");
    assert_eq!(dev.publish(&Publish::new(true, "devices/dev-2/up", b"x").qos(1, 2)).await, 0x87);
}
