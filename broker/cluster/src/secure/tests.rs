use super::*;
use crate::mux::{self, Link, LinkOptions};
use crate::wire::ShardMsg;
use bytes::Bytes;
use std::path::Path;
use std::time::Duration;

/// Development certificates (CA, server for `hosts`, client) in `dir`.
fn certs(dir: &Path, hosts: &[&str]) {
    let hosts: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
    fleetmq_certs::dev::generate_dev_certs(dir, &hosts, "node").unwrap();
}

fn config(dir: &Path, ca: &Path, server_name: Option<&str>) -> LinkTlsConfig {
    LinkTlsConfig {
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
        ca: ca.join("ca.pem"),
        client_cert: Some(dir.join("client.pem")),
        client_key: Some(dir.join("client.key")),
        server_name: server_name.map(str::to_owned),
    }
}

fn opts(tls: Option<LinkTls>) -> LinkOptions {
    LinkOptions {
        heartbeat: Duration::from_millis(100),
        heartbeat_timeout: Duration::from_secs(2),
        window: 65536,
        tls: tls.map(Arc::new),
    }
}

/// A one-link internal listener on 127.0.0.1 that completes the TLS handshake and the hello with
/// `server`, then sends one shard message; the task's result says whether the link came up.
async fn listen(server: LinkTls) -> (SocketAddr, tokio::task::JoinHandle<bool>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let Ok(tls) = server.accept(tcp).await else { return false };
        let Ok(accepted) = Link::accept(tls, "shard-1", opts(None), |n| n == "front-1").await else { return false };
        accepted.link.send(ShardMsg::ForwardAck { epoch: 1, seq: 42 }, Bytes::new())
    });
    (addr, task)
}

#[tokio::test]
async fn nodes_of_one_ca_link_and_the_ip_is_verified_by_default() {
    let dir = tempfile::tempdir().unwrap();
    certs(dir.path(), &["127.0.0.1"]);
    let (addr, server) = listen(LinkTls::new(&config(dir.path(), dir.path(), None)).unwrap()).await;
    let client = opts(Some(LinkTls::new(&config(dir.path(), dir.path(), None)).unwrap()));
    let (link, mut replies) = mux::connect(addr, "front-1", &client).await.unwrap();
    assert_eq!(link.peer(), "shard-1");
    assert!(server.await.unwrap());
    let (msg, _) = tokio::time::timeout(Duration::from_secs(5), replies.recv()).await.unwrap().unwrap();
    assert_eq!(msg, ShardMsg::ForwardAck { epoch: 1, seq: 42 });
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused() {
    let (ours, theirs) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    certs(ours.path(), &["127.0.0.1"]);
    certs(theirs.path(), &["127.0.0.1"]);
    let (addr, server) = listen(LinkTls::new(&config(ours.path(), ours.path(), None)).unwrap()).await;
    // The stranger trusts our CA, so only our side's check of its client certificate can fail.
    let stranger = opts(Some(LinkTls::new(&config(theirs.path(), ours.path(), None)).unwrap()));
    let dialed = mux::connect(addr, "front-1", &stranger).await;
    assert!(!server.await.unwrap(), "the listener must refuse a client certificate of another CA");
    assert!(dialed.is_err());
}

#[tokio::test]
async fn a_server_certificate_for_another_name_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    certs(dir.path(), &["shard.internal"]);
    let (addr, _server) = listen(LinkTls::new(&config(dir.path(), dir.path(), None)).unwrap()).await;
    let by_ip = opts(Some(LinkTls::new(&config(dir.path(), dir.path(), None)).unwrap()));
    let err = mux::connect(addr, "front-1", &by_ip).await.err().expect("the certificate does not name 127.0.0.1");
    assert!(err.to_string().contains("TLS"), "{err}");
    let (addr, server) = listen(LinkTls::new(&config(dir.path(), dir.path(), None)).unwrap()).await;
    let by_name = opts(Some(LinkTls::new(&config(dir.path(), dir.path(), Some("shard.internal"))).unwrap()));
    assert!(mux::connect(addr, "front-1", &by_name).await.is_ok());
    assert!(server.await.unwrap());
}

#[tokio::test]
async fn a_plain_tcp_peer_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    certs(dir.path(), &["127.0.0.1"]);
    let (addr, server) = listen(LinkTls::new(&config(dir.path(), dir.path(), None)).unwrap()).await;
    let dialed = mux::connect(addr, "front-1", &opts(None)).await;
    assert!(!server.await.unwrap());
    assert!(dialed.is_err());
}

#[test]
fn file_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    certs(dir.path(), &["127.0.0.1"]);
    let mut c = config(dir.path(), dir.path(), None);
    c.ca = dir.path().join("missing-ca.pem");
    let err = LinkTls::new(&c).unwrap_err().to_string();
    assert!(err.contains("missing-ca.pem"), "{err}");
}

#[tokio::test]
async fn a_cluster_certificate_without_the_link_alpn_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    certs(dir.path(), &["127.0.0.1"]);
    let (addr, server) = listen(LinkTls::new(&config(dir.path(), dir.path(), None)).unwrap()).await;
    // A client with a valid cluster certificate that offers no ALPN (an MQTT client, say).
    let d = dir.path();
    let plain =
        fleetmq_certs::tls::client_config(&d.join("client.pem"), &d.join("client.key"), &d.join("ca.pem")).unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::IpAddress(addr.ip().into());
    // It completes the handshake and says a member's hello, as a node would.
    if let Ok(tls) = tokio_rustls::TlsConnector::from(plain).connect(name, tcp).await {
        let _ = Link::dial(tls, "front-1", opts(None)).await;
    }
    assert!(!server.await.unwrap(), "no link without ALPN fleetmq-link");
}
