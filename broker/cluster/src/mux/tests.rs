use super::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub(crate) fn opts(window: u32) -> LinkOptions {
    LinkOptions {
        heartbeat: Duration::from_millis(50),
        heartbeat_timeout: Duration::from_millis(400),
        window,
        tls: None,
    }
}

pub(crate) fn open() -> SessionOpen {
    SessionOpen {
        peer: "127.0.0.1:1".parse().unwrap(),
        username: None,
        assigned_client_id: false,
        server_keep_alive: None,
        owner: "shard-1".into(),
    }
}

pub(crate) async fn pair(window: u32) -> (Link, Link, mpsc::UnboundedReceiver<Incoming>) {
    let (a, b) = tokio::io::duplex(1 << 20);
    let accept = tokio::spawn(async move { Link::accept(b, "shard-1", opts(window), |n| n == "front-1").await });
    let (front, _) = Link::dial(a, "front-1", opts(window)).await.unwrap();
    let Accepted { link: shard, incoming, .. } = accept.await.unwrap().unwrap();
    assert_eq!(front.peer(), "shard-1");
    assert_eq!(shard.peer(), "front-1");
    (front, shard, incoming)
}

#[tokio::test]
async fn streams_carry_bytes_both_ways_and_close_ends_reads() {
    let (front, _shard, mut incoming) = pair(4096).await;
    let mut a = front.open(open(), Bytes::from_static(b"CONNECT")).unwrap();
    let Incoming { stream: mut b, connect, open: o } = incoming.recv().await.unwrap();
    assert_eq!(&connect[..], b"CONNECT");
    assert_eq!(o, open());
    // More than a window each way: credit must flow back for this to finish.
    let data: Vec<u8> = (0..50_000u32).map(|i| i as u8).collect();
    let expect = data.clone();
    let writer = tokio::spawn(async move {
        a.write_all(&data).await.unwrap();
        let mut back = vec![0u8; 3];
        a.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"ack");
        a.shutdown().await.unwrap();
    });
    let mut got = vec![0u8; expect.len()];
    b.read_exact(&mut got).await.unwrap();
    assert_eq!(got, expect);
    b.write_all(b"ack").await.unwrap();
    writer.await.unwrap();
    let mut rest = Vec::new();
    assert_eq!(b.read_to_end(&mut rest).await.unwrap(), 0, "close reads as end of stream");
    let err = b.write_all(b"x").await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::BrokenPipe);
}

#[tokio::test]
async fn a_stream_that_is_not_read_does_not_stall_the_others() {
    let (front, _shard, mut incoming) = pair(4096).await;
    let mut stalled = front.open(open(), Bytes::new()).unwrap();
    let _stalled_peer = incoming.recv().await.unwrap();
    let mut live = front.open(open(), Bytes::new()).unwrap();
    let mut live_peer = incoming.recv().await.unwrap().stream;
    // The stalled stream fills its window and then waits; it never blocks the link.
    let filled = tokio::time::timeout(Duration::from_millis(300), stalled.write_all(&[1u8; 100_000])).await;
    assert!(filled.is_err(), "a writer past the window must wait for credit");
    for round in 0..20u8 {
        live.write_all(&[round; 1000]).await.unwrap();
        let mut buf = [0u8; 1000];
        live_peer.read_exact(&mut buf).await.unwrap();
        assert!(buf.iter().all(|b| *b == round));
    }
}

#[tokio::test]
async fn a_dead_link_fails_its_streams_with_connection_reset() {
    let (front, shard, mut incoming) = pair(4096).await;
    let mut a = front.open(open(), Bytes::new()).unwrap();
    let mut b = incoming.recv().await.unwrap().stream;
    shard.close();
    let mut buf = [0u8; 1];
    let err = b.read(&mut buf).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
    // The other side notices by the closed transport (or the heartbeat timeout).
    let err = tokio::time::timeout(Duration::from_secs(5), a.read(&mut buf)).await.unwrap().unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
    assert!(front.is_dead());
    assert!(front.open(open(), Bytes::new()).is_none());
}

#[tokio::test]
async fn a_silent_peer_is_declared_dead_by_heartbeat_timeout() {
    let (a, b) = tokio::io::duplex(1 << 16);
    // The peer answers the hello and then says nothing at all.
    let silent = tokio::spawn(async move {
        let (r, w) = tokio::io::split(b);
        let mut reader = FramedRead::new(r, FrameCodec::default());
        let mut writer = FramedWrite::new(w, FrameCodec::default());
        let _ = reader.next().await;
        writer.send(Frame::bare(Header::Hello(Hello { version: PROTOCOL_VERSION, node: "s".into() }))).await.unwrap();
        tokio::time::sleep(Duration::from_secs(10)).await;
        drop((reader, writer));
    });
    let (link, _) = Link::dial(a, "f", opts(4096)).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), link.dead()).await.expect("declared dead");
    silent.abort();
}

#[tokio::test]
async fn unknown_nodes_and_other_versions_are_refused() {
    let (a, b) = tokio::io::duplex(1 << 16);
    let accept = tokio::spawn(async move { Link::accept(b, "shard-1", opts(4096), |n| n == "front-1").await });
    let dial = Link::dial(a, "intruder", opts(4096)).await;
    assert!(matches!(accept.await.unwrap(), Err(Error::Handshake(_))));
    assert!(dial.is_err());
    // A member speaking another protocol version.
    let (a, b) = tokio::io::duplex(1 << 16);
    let accept = tokio::spawn(async move { Link::accept(b, "shard-1", opts(4096), |_| true).await });
    let mut writer = FramedWrite::new(a, FrameCodec::default());
    let hello = Hello { version: PROTOCOL_VERSION + 1, node: "front-1".into() };
    writer.send(Frame::bare(Header::Hello(hello))).await.unwrap();
    match accept.await.unwrap() {
        Err(Error::Handshake(why)) => assert!(why.contains("protocol"), "{why}"),
        other => panic!("expected a refused handshake, got {:?}", other.map(|_| ())),
    }
}

#[tokio::test]
async fn shard_messages_arrive_in_order_with_their_body() {
    let (a, b) = tokio::io::duplex(1 << 20);
    let accept = tokio::spawn(async move { Link::accept(b, "shard-2", opts(4096), |_| true).await });
    let (dialer, mut replies) = Link::dial(a, "shard-1", opts(4096)).await.unwrap();
    let mut accepted = accept.await.unwrap().unwrap();
    for seq in 1..=100u64 {
        assert!(dialer.send(
            ShardMsg::Forward { epoch: 7, seq, direct: true, groups: Vec::new(), retain: false, moved: false },
            Bytes::from(seq.to_be_bytes().to_vec())
        ));
    }
    for seq in 1..=100u64 {
        let (msg, body) = accepted.messages.recv().await.unwrap();
        assert_eq!(
            msg,
            ShardMsg::Forward { epoch: 7, seq, direct: true, groups: Vec::new(), retain: false, moved: false }
        );
        assert_eq!(&body[..], &seq.to_be_bytes());
    }
    assert!(accepted.link.send(ShardMsg::ForwardAck { epoch: 7, seq: 100 }, Bytes::new()));
    assert_eq!(replies.recv().await.unwrap().0, ShardMsg::ForwardAck { epoch: 7, seq: 100 });
}
