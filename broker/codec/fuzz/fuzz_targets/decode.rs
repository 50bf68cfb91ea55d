//! Feeds arbitrary bytes to the MQTT decoder as one connection would: the first input byte picks
//! the connection state (no CONNECT yet, 3.1, 3.1.1 or 5.0), a decoded CONNECT moves the state to
//! its protocol, and decoding stops at the first error or incomplete packet. Every accepted packet
//! must re-encode to exactly `encoded_len` bytes and decode back to the same packet.
#![no_main]

use bytes::BytesMut;
use fleetmq_codec::{decode, encode, encoded_len, Packet, Protocol};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, input)) = data.split_first() else {
        return;
    };
    let mut state = match selector % 4 {
        0 => None,
        1 => Some(Protocol::V3_1),
        2 => Some(Protocol::V3_1_1),
        _ => Some(Protocol::V5),
    };
    let max = if selector & 0x80 != 0 { 64 } else { 1 << 20 };
    let mut buf = BytesMut::from(input);
    while let Ok(Some(packet)) = decode(&mut buf, state, max) {
        let protocol = match (&packet, state) {
            (Packet::Connect(c), None) => c.protocol,
            (Packet::Connect(_), Some(_)) => panic!("second CONNECT accepted"),
            (_, Some(p)) => p,
            (_, None) => panic!("packet accepted before CONNECT"),
        };
        let mut out = BytesMut::new();
        encode(&packet, protocol, &mut out).expect("decoded packet re-encodes");
        assert_eq!(out.len(), encoded_len(&packet, protocol));
        let decode_state = if matches!(packet, Packet::Connect(_)) { None } else { state };
        let again = decode(&mut out, decode_state, usize::MAX).expect("re-encoded packet decodes");
        assert_eq!(again.as_ref(), Some(&packet));
        state = Some(protocol);
    }
});
