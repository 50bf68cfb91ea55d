use super::*;

fn v2_ipv4(src: [u8; 4], sport: u16, tail: &[u8]) -> Vec<u8> {
    let mut b = ppp::v2::PROTOCOL_PREFIX.to_vec();
    b.extend_from_slice(&[0x21, 0x11, 0, 12]);
    b.extend_from_slice(&src);
    b.extend_from_slice(&[127, 0, 0, 1]);
    b.extend_from_slice(&sport.to_be_bytes());
    b.extend_from_slice(&1883u16.to_be_bytes());
    b.extend_from_slice(tail);
    b
}

#[test]
fn v1_header_gives_the_client_address_and_its_length() {
    let input = b"PROXY TCP4 203.0.113.9 127.0.0.1 4242 1883\r\n\x10\x0c";
    let (len, addr) = parse(input, ProxyProtocol::V1).unwrap().unwrap();
    assert_eq!(len, input.len() - 2, "the MQTT bytes after the header are not part of it");
    assert_eq!(addr, Some("203.0.113.9:4242".parse().unwrap()));
    let v6 = b"PROXY TCP6 2001:db8::7 ::1 5555 1883\r\n";
    let (_, addr) = parse(v6, ProxyProtocol::Any).unwrap().unwrap();
    assert_eq!(addr, Some("[2001:db8::7]:5555".parse().unwrap()));
}

#[test]
fn v2_header_gives_the_client_address_and_its_length() {
    let input = v2_ipv4([198, 51, 100, 20], 61000, b"\x10");
    let (len, addr) = parse(&input, ProxyProtocol::V2).unwrap().unwrap();
    assert_eq!(len, 16 + 12);
    assert_eq!(addr, Some("198.51.100.20:61000".parse().unwrap()));
    assert_eq!(parse(&input, ProxyProtocol::Any).unwrap().unwrap(), (len, addr));
}

#[test]
fn local_and_unknown_headers_keep_the_socket_address() {
    let mut local = ppp::v2::PROTOCOL_PREFIX.to_vec();
    local.extend_from_slice(&[0x20, 0x00, 0, 0]);
    assert_eq!(parse(&local, ProxyProtocol::V2).unwrap().unwrap(), (16, None));
    assert_eq!(parse(b"PROXY UNKNOWN\r\n", ProxyProtocol::V1).unwrap().unwrap(), (15, None));
}

#[test]
fn partial_headers_wait_for_more() {
    let full = v2_ipv4([10, 0, 0, 1], 1, b"");
    for cut in [1, 11, 12, 15, 20] {
        assert!(parse(&full[..cut], ProxyProtocol::V2).unwrap().is_none(), "v2 cut at {cut}");
    }
    assert!(parse(b"PROXY TCP4 10.0.0.1 10.0", ProxyProtocol::V1).unwrap().is_none());
}

#[test]
fn wrong_version_or_garbage_is_refused() {
    let v2 = v2_ipv4([10, 0, 0, 1], 1, b"");
    assert!(matches!(parse(&v2, ProxyProtocol::V1), Err(Error::Malformed(_))));
    let v1 = b"PROXY TCP4 203.0.113.9 127.0.0.1 4242 1883\r\n";
    assert!(matches!(parse(v1, ProxyProtocol::V2), Err(Error::Malformed(_))));
    // An MQTT CONNECT where a header was expected.
    let connect = b"\x10\x10\x00\x04MQTT\x04\x02\x00\x3c\x00\x04abcd";
    assert!(matches!(parse(connect, ProxyProtocol::Any), Err(Error::Malformed(_))));
    assert!(matches!(parse(b"PROXY TCP4 999.1.1.1 1.1.1.1 1 1\r\n", ProxyProtocol::V1), Err(Error::Malformed(_))));
}
