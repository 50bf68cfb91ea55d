//! The internal link's frames: a `postcard`-encoded [`Header`] followed by an opaque body (MQTT
//! bytes of a session, a CONNECT), inside a length-delimited frame.
//!
//! Layout: `u32` frame length (big-endian, header + body), then the header, then the body. The
//! body is handed on as a slice of the read buffer, never copied.
//!
//! Invariants: a frame longer than [`MAX_FRAME`] is a protocol error that ends the link (never an
//! allocation of the announced size); a header that does not decode ends the link too.

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use tokio_util::codec::{Decoder, Encoder, LengthDelimitedCodec};

/// Version of the internal protocol; both ends of a link must speak the same one.
pub const PROTOCOL_VERSION: u16 = 2;

/// Largest frame: one MQTT packet of the largest configurable size plus header.
pub const MAX_FRAME: usize = 268_435_460 + 1024;

/// A stream (one session's connection) on a link. The dialing side uses odd ids, the accepting
/// side even ones, so both can open streams without agreeing first.
pub type StreamId = u64;

/// What a node tells its peer when a link comes up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    pub version: u16,
    pub node: String,
}

/// A front asking the shard to attach a client connection to its session. The body is the
/// client's CONNECT packet as admitted by the front (client id assigned, password removed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionOpen {
    /// The client's address (from the PROXY header when one was given).
    pub peer: SocketAddr,
    /// Who the front authenticated the client as.
    pub username: Option<String>,
    /// The front assigned the client id (5.0: sent back as Assigned Client Identifier).
    pub assigned_client_id: bool,
    /// The keepalive the front enforces when it differs from the client's (5.0: Server Keep Alive).
    pub server_keep_alive: Option<u16>,
    /// The shard the front's ring names as the session's owner (this one, or the one it stands
    /// in for under `on_shard_loss = "next_shard"`): a shard whose own ring disagrees refuses the
    /// session, so two configurations never serve one client id at once.
    pub owner: String,
}

/// The header of a frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Header {
    /// First frame each way.
    Hello(Hello),
    /// Liveness probe; answered with `Pong` carrying the same value.
    Ping(u64),
    Pong(u64),
    /// Opens a session stream; the body is the CONNECT packet. `window` is the credit the opener
    /// grants for data towards it; the acceptor grants its own with a first `Credit`.
    Open {
        stream: StreamId,
        window: u32,
        open: SessionOpen,
    },
    /// Stream bytes; the body is the data.
    Data {
        stream: StreamId,
    },
    /// The receiver consumed this many bytes: the sender may send that many more.
    Credit {
        stream: StreamId,
        bytes: u32,
    },
    /// The sender sends no more data on this stream and drops it.
    Close {
        stream: StreamId,
    },
    /// Between shards: routes and forwarded publishes.
    Shard(ShardMsg),
}

pub use fleetmq_core::port::RouteKey;

/// What shards tell each other.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ShardMsg {
    /// Every filter the sender's sessions subscribe to; replaces what the receiver knew of it.
    Routes {
        routes: Vec<RouteKey>,
    },
    /// The sender's sessions now subscribe to this filter (first subscriber); answered with
    /// `RouteAck { id }` once known, so the subscriber's SUBACK can wait for it.
    RouteAdd {
        key: RouteKey,
        id: u64,
    },
    RouteAck {
        id: u64,
    },
    /// ... and no longer (last subscriber gone).
    RouteDel(RouteKey),
    /// A publish for the receiver's subscribers; the body is the message record. Sequence numbers
    /// rise by one per message within an epoch, per target shard. The receiver delivers to its
    /// direct subscriptions if `direct`, and to its members of exactly the shared `groups` (the
    /// sender chose this shard to serve them); with `retain` it also stores the message as its
    /// topic's retained message (the receiver owns that topic); `moved` marks a retained message
    /// handed over by its previous owner, stored only if the receiver has none for the topic yet
    /// (one published since is newer).
    Forward {
        epoch: u64,
        seq: u64,
        direct: bool,
        groups: Vec<RouteKey>,
        retain: bool,
        moved: bool,
    },
    /// Asks for the retained messages matching `filter` that the receiver owns.
    RetainedQuery {
        id: u64,
        filter: String,
    },
    /// The answer: message records.
    RetainedReply {
        id: u64,
        records: Vec<Vec<u8>>,
    },
    /// The receiver queued forward (`epoch`, `seq`) for its subscribers (and stored it, when durable).
    ForwardAck {
        epoch: u64,
        seq: u64,
    },
    /// Hand-over of a persistent session to its new owner (the receiver): the body is the stored
    /// session record. `next_seq` is the sender's next delivery sequence, so entries handed over
    /// later keep their order below anything the receiver queues meanwhile.
    HandoverBegin {
        id: u64,
        client_id: String,
        next_seq: u64,
    },
    /// The receiver holds the session and every shard routes its subscriptions there (`ok`), or it
    /// cannot take it now (a shard of its membership is unreachable): the sender keeps it and
    /// tries again later.
    HandoverReady {
        id: u64,
        ok: bool,
    },
    /// One queued or in-flight delivery of the session being handed over; the body is the
    /// message record (which carries the message's uid).
    HandoverEntry {
        id: u64,
        seq: u64,
        qos: u8,
        retain: bool,
        sub_ids: Vec<u32>,
        /// QoS 2: PUBREC was received, resume with PUBREL.
        released: bool,
    },
    /// The last of the entries; with the inbound QoS 2 packet ids awaiting PUBREL.
    HandoverEnd {
        id: u64,
        client_id: String,
        entries: u32,
        inbound: Vec<u16>,
    },
    /// The receiver stored everything: the sender deletes its copy.
    HandoverDone {
        id: u64,
        ok: bool,
    },
}

/// One frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub header: Header,
    pub body: Bytes,
}

impl Frame {
    /// A frame without body.
    pub fn bare(header: Header) -> Frame {
        Frame { header, body: Bytes::new() }
    }
}

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("bad frame header: {0}")]
    Header(#[from] postcard::Error),
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, Error>;

/// Encodes and decodes [`Frame`]s.
pub struct FrameCodec {
    outer: LengthDelimitedCodec,
}

impl Default for FrameCodec {
    fn default() -> Self {
        FrameCodec { outer: LengthDelimitedCodec::builder().max_frame_length(MAX_FRAME).new_codec() }
    }
}

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>> {
        let Some(mut frame) = self.outer.decode(src)? else { return Ok(None) };
        let (header, rest) = postcard::take_from_bytes::<Header>(&frame)?;
        let header_len = frame.len() - rest.len();
        let body = frame.split_off(header_len).freeze();
        Ok(Some(Frame { header, body }))
    }
}

impl Encoder<Frame> for FrameCodec {
    type Error = Error;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<()> {
        let header = postcard::to_stdvec(&frame.header)?;
        let len = header.len() + frame.body.len();
        if len > MAX_FRAME {
            return Err(Error::Io(std::io::Error::new(std::io::ErrorKind::InvalidInput, "frame too large")));
        }
        dst.reserve(4 + len);
        dst.put_u32(len as u32);
        dst.extend_from_slice(&header);
        dst.extend_from_slice(&frame.body);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(frame: Frame) {
        let mut codec = FrameCodec::default();
        let mut buf = BytesMut::new();
        codec.encode(frame.clone(), &mut buf).unwrap();
        // Byte by byte: a partial frame is never decoded early.
        let mut partial = BytesMut::new();
        let total = buf.len();
        for (i, b) in buf.iter().enumerate() {
            partial.put_u8(*b);
            let got = codec.decode(&mut partial).unwrap();
            if i + 1 < total {
                assert!(got.is_none());
            } else {
                assert_eq!(got.unwrap(), frame);
            }
        }
    }

    #[test]
    fn frames_roundtrip() {
        roundtrip(Frame::bare(Header::Hello(Hello { version: PROTOCOL_VERSION, node: "shard-1".into() })));
        roundtrip(Frame::bare(Header::Ping(7)));
        roundtrip(Frame {
            header: Header::Open {
                stream: 3,
                window: 65536,
                open: SessionOpen {
                    peer: "10.1.2.3:4567".parse().unwrap(),
                    username: Some("u".into()),
                    assigned_client_id: true,
                    server_keep_alive: Some(60),
                    owner: "shard-2".into(),
                },
            },
            body: Bytes::from_static(b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00"),
        });
        roundtrip(Frame { header: Header::Data { stream: u64::MAX }, body: Bytes::from(vec![0xAB; 5000]) });
        roundtrip(Frame::bare(Header::Credit { stream: 9, bytes: 1 << 20 }));
        roundtrip(Frame::bare(Header::Close { stream: 1 }));
        let key = RouteKey { filter: "fleet/+/telemetry".into(), group: Some("g".into()) };
        roundtrip(Frame::bare(Header::Shard(ShardMsg::Routes { routes: vec![key.clone()] })));
        let forward =
            ShardMsg::Forward { epoch: 3, seq: 9, direct: true, groups: vec![key.clone()], retain: true, moved: false };
        roundtrip(Frame { header: Header::Shard(forward), body: Bytes::from("rec") });
        roundtrip(Frame::bare(Header::Shard(ShardMsg::RouteDel(key))));
    }

    #[test]
    fn garbage_and_oversize_are_errors_not_panics() {
        let mut codec = FrameCodec::default();
        let mut buf = BytesMut::from(&[0, 0, 0, 3, 0xFF, 0xFF, 0xFF][..]);
        assert!(codec.decode(&mut buf).is_err());
        let mut codec = FrameCodec::default();
        let mut buf = BytesMut::from(&[0xFF, 0xFF, 0xFF, 0xFF, 0][..]);
        assert!(codec.decode(&mut buf).is_err());
        let mut codec = FrameCodec::default();
        let mut buf = BytesMut::from(&[0, 0, 0, 0][..]);
        assert!(codec.decode(&mut buf).is_err(), "an empty frame has no header");
    }
}
