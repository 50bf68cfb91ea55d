use super::*;

fn sent(s: Started) -> Publish {
    match s {
        Started::Sent(p) => p,
        other => panic!("not sent: {other:?}"),
    }
}

use crate::ids::ClientId;
use crate::message::Message;
use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;

fn delivery(qos: QoS, payload: &'static str) -> Delivery {
    let msg = Message {
        topic: Arc::from("t"),
        payload: Bytes::from_static(payload.as_bytes()),
        qos,
        retain: false,
        properties: Default::default(),
        publisher: ClientId::new("p"),
        expires_at: None,
        uid: crate::ids::MessageUid::next(),
    };
    Delivery { msg: Arc::new(msg), qos, retain: false, sub_ids: vec![], durable: None }
}

fn inbound(qos: QoS, packet_id: u16) -> Publish {
    Publish { qos, packet_id, topic: "t".into(), ..Default::default() }
}

#[test]
fn qos0_outbound_is_not_tracked() {
    let mut s = QosState::new(10, 1);
    let p = sent(s.send(delivery(QoS::AtMostOnce, "a"), Instant::now()));
    assert_eq!(p.packet_id, 0);
    assert_eq!(s.in_flight(), 0);
    assert!(s.window_open());
}

#[test]
fn qos1_outbound_published_then_puback_frees_window() {
    let mut s = QosState::new(10, 1);
    let p = sent(s.send(delivery(QoS::AtLeastOnce, "a"), Instant::now()));
    assert_ne!(p.packet_id, 0);
    assert!(!s.window_open());
    assert!(s.on_puback(p.packet_id + 1).is_none(), "unknown id frees nothing");
    assert!(s.on_puback(p.packet_id).is_some());
    assert!(s.window_open());
    assert!(s.on_puback(p.packet_id).is_none(), "second PUBACK is ignored");
}

#[test]
fn qos2_outbound_full_handshake() {
    let mut s = QosState::new(10, 2);
    let p = sent(s.send(delivery(QoS::ExactlyOnce, "a"), Instant::now()));
    let id = p.packet_id;
    assert!(s.on_pubcomp(id).is_none(), "PUBCOMP before PUBREC does not complete");
    assert!(s.on_puback(id).is_none(), "PUBACK does not complete a QoS 2 flow");
    assert_eq!(s.on_pubrec(id, ReasonCode::SUCCESS), PubRecOutcome::Release(Packet::PubRel(PubResp::new(id))));
    assert_eq!(
        s.on_pubrec(id, ReasonCode::SUCCESS),
        PubRecOutcome::Release(Packet::PubRel(PubResp::new(id))),
        "duplicate PUBREC re-sends PUBREL"
    );
    assert_eq!(s.in_flight(), 1);
    assert!(s.on_pubcomp(id).is_some());
    assert_eq!(s.in_flight(), 0);
}

#[test]
fn qos2_pubrec_with_error_ends_flow() {
    let mut s = QosState::new(10, 1);
    let id = sent(s.send(delivery(QoS::ExactlyOnce, "a"), Instant::now())).packet_id;
    assert!(matches!(s.on_pubrec(id, ReasonCode::UNSPECIFIED_ERROR), PubRecOutcome::Ended(_)));
    assert!(s.window_open());
}

#[test]
fn pubrec_for_unknown_id_answers_not_found() {
    let mut s = QosState::new(10, 1);
    assert_eq!(
        s.on_pubrec(9, ReasonCode::SUCCESS),
        PubRecOutcome::Release(Packet::PubRel(PubResp::with_reason(9, ReasonCode::PACKET_IDENTIFIER_NOT_FOUND)))
    );
}

#[test]
fn packet_ids_are_not_reused_while_in_flight_and_wrap() {
    let mut s = QosState::new(10, u16::MAX);
    s.next_packet_id = u16::MAX - 1;
    let a = sent(s.send(delivery(QoS::AtLeastOnce, "a"), Instant::now())).packet_id;
    let b = sent(s.send(delivery(QoS::AtLeastOnce, "b"), Instant::now())).packet_id;
    let c = sent(s.send(delivery(QoS::AtLeastOnce, "c"), Instant::now())).packet_id;
    assert_eq!((a, b, c), (u16::MAX - 1, u16::MAX, 1), "ids wrap past 65535 to 1, never 0");
    s.next_packet_id = u16::MAX;
    let d = sent(s.send(delivery(QoS::AtLeastOnce, "d"), Instant::now())).packet_id;
    assert_eq!(d, 2, "ids still in flight are skipped");
}

#[test]
fn resume_replays_in_order_with_dup_and_pubrel() {
    let mut s = QosState::new(10, 10);
    let now = Instant::now();
    let a = sent(s.send(delivery(QoS::AtLeastOnce, "a"), now)).packet_id;
    let b = sent(s.send(delivery(QoS::ExactlyOnce, "b"), now)).packet_id;
    let c = sent(s.send(delivery(QoS::ExactlyOnce, "c"), now)).packet_id;
    s.on_pubrec(b, ReasonCode::SUCCESS);
    s.detach();
    s.resume();
    assert!(!s.window_open(), "new deliveries wait for retransmissions");
    let replay: Vec<Packet> = std::iter::from_fn(|| s.next_resend(now)).collect();
    assert_eq!(replay.len(), 3);
    assert!(s.window_open());
    match &replay[0] {
        Packet::Publish(p) => assert!(p.dup && p.packet_id == a && p.payload == "a"),
        other => panic!("{other:?}"),
    }
    assert_eq!(replay[1], Packet::PubRel(PubResp::new(b)));
    match &replay[2] {
        Packet::Publish(p) => assert!(p.dup && p.packet_id == c && p.qos == QoS::ExactlyOnce),
        other => panic!("{other:?}"),
    }
}

#[test]
fn expired_message_is_not_started() {
    let mut s = QosState::new(10, 10);
    let now = Instant::now();
    let mut d = delivery(QoS::AtLeastOnce, "a");
    Arc::get_mut(&mut d.msg).unwrap().expires_at = Some(now);
    assert!(matches!(s.send(d, now + Duration::from_millis(1)), Started::Expired(_)));
    assert_eq!(s.in_flight(), 0);
}

#[test]
fn inbound_qos1_acked_after_route() {
    let mut s = QosState::new(10, 10);
    assert_eq!(s.on_publish(&inbound(QoS::AtLeastOnce, 5)), Ok(Inbound::Deliver));
    assert_eq!(s.inbound_in_flight(), 1);
    assert_eq!(s.publish_done(QoS::AtLeastOnce, 5, ReasonCode::SUCCESS), Some(Packet::PubAck(PubResp::new(5))));
    assert_eq!(s.inbound_in_flight(), 0);
}

#[test]
fn inbound_qos2_duplicate_is_not_delivered_twice() {
    let mut s = QosState::new(10, 10);
    assert_eq!(s.on_publish(&inbound(QoS::ExactlyOnce, 7)), Ok(Inbound::Deliver));
    assert_eq!(s.publish_done(QoS::ExactlyOnce, 7, ReasonCode::SUCCESS), Some(Packet::PubRec(PubResp::new(7))));
    assert_eq!(s.on_publish(&inbound(QoS::ExactlyOnce, 7)), Ok(Inbound::Duplicate));
    assert_eq!(s.on_pubrel(7), Packet::PubComp(PubResp::new(7)));
    assert_eq!(s.on_publish(&inbound(QoS::ExactlyOnce, 7)), Ok(Inbound::Deliver), "id reusable after PUBREL");
}

#[test]
fn inbound_qos2_error_reason_releases_id() {
    let mut s = QosState::new(10, 10);
    s.on_publish(&inbound(QoS::ExactlyOnce, 7)).unwrap();
    let rec = s.publish_done(QoS::ExactlyOnce, 7, ReasonCode::NOT_AUTHORIZED);
    assert_eq!(rec, Some(Packet::PubRec(PubResp::with_reason(7, ReasonCode::NOT_AUTHORIZED))));
    assert_eq!(s.inbound_in_flight(), 0);
}

#[test]
fn pubrel_for_unknown_id_answers_not_found() {
    let mut s = QosState::new(10, 10);
    assert_eq!(s.on_pubrel(3), Packet::PubComp(PubResp::with_reason(3, ReasonCode::PACKET_IDENTIFIER_NOT_FOUND)));
}

#[test]
fn receive_maximum_is_enforced() {
    let mut s = QosState::new(2, 10);
    s.on_publish(&inbound(QoS::ExactlyOnce, 1)).unwrap();
    s.on_publish(&inbound(QoS::AtLeastOnce, 2)).unwrap();
    assert_eq!(s.on_publish(&inbound(QoS::AtLeastOnce, 3)), Err(ReasonCode::RECEIVE_MAXIMUM_EXCEEDED));
    assert_eq!(s.on_publish(&inbound(QoS::ExactlyOnce, 4)), Err(ReasonCode::RECEIVE_MAXIMUM_EXCEEDED));
    assert_eq!(s.on_publish(&inbound(QoS::ExactlyOnce, 1)), Ok(Inbound::Duplicate), "a retransmission is not new");
    assert_eq!(s.on_publish(&inbound(QoS::AtMostOnce, 0)), Ok(Inbound::Deliver), "QoS 0 is not counted");
    s.on_pubrel(1);
    assert_eq!(s.on_publish(&inbound(QoS::AtLeastOnce, 3)), Ok(Inbound::Deliver));
}

#[test]
fn detach_forgets_unacked_inbound_qos1_but_keeps_qos2() {
    let mut s = QosState::new(10, 10);
    s.on_publish(&inbound(QoS::AtLeastOnce, 1)).unwrap();
    s.on_publish(&inbound(QoS::ExactlyOnce, 2)).unwrap();
    s.detach();
    assert_eq!(s.inbound_in_flight(), 1);
    assert_eq!(s.incoming_qos2().collect::<Vec<_>>(), vec![2]);
}

#[test]
fn resume_respects_a_smaller_window_of_the_new_connection() {
    let mut s = QosState::new(10, 10);
    let now = Instant::now();
    let ids: Vec<u16> = (0..5).map(|_| sent(s.send(delivery(QoS::AtLeastOnce, "x"), now)).packet_id).collect();
    s.detach();
    s.set_limits(10, 2);
    s.resume();
    let first: Vec<Packet> = std::iter::from_fn(|| s.next_resend(now)).collect();
    assert_eq!(first.len(), 2, "only the new Receive Maximum may be in flight");
    assert!(s.on_puback(ids[0]).is_some());
    let next = s.next_resend(now).expect("a slot freed");
    match next {
        Packet::Publish(p) => assert_eq!(p.packet_id, ids[2]),
        other => panic!("{other:?}"),
    }
    assert!(s.next_resend(now).is_none());
}

#[test]
fn abandoned_flight_is_not_retransmitted() {
    let mut s = QosState::new(10, 10);
    let now = Instant::now();
    let a = sent(s.send(delivery(QoS::AtLeastOnce, "a"), now)).packet_id;
    let b = sent(s.send(delivery(QoS::AtLeastOnce, "b"), now)).packet_id;
    s.resume();
    s.abandon(a);
    match s.next_resend(now) {
        Some(Packet::Publish(p)) => assert_eq!(p.packet_id, b),
        other => panic!("{other:?}"),
    }
    assert!(s.next_resend(now).is_none());
}

#[test]
fn stored_deliveries_use_their_sequence_as_packet_id_and_wait_when_it_is_busy() {
    use crate::message::DurableRef;
    let mut s = QosState::new(10, 10);
    let now = Instant::now();
    let stored = |seq| {
        let mut d = delivery(QoS::AtLeastOnce, "s");
        d.durable = Some(DurableRef { incarnation: 1, seq, msg_id: 1, recovered: false });
        d
    };
    let p = sent(s.send(stored(4), now));
    assert_eq!(p.packet_id, stored_packet_id(4));
    assert_eq!(stored_packet_id(4), 5);
    assert_eq!(stored_packet_id(65_535), 1, "ids wrap and are never 0");
    assert!(matches!(s.send(stored(4 + 65_535), now), Started::Blocked(_)), "same id still in flight");
    assert!(s.on_puback(5).is_some());
    assert_eq!(sent(s.send(stored(4 + 65_535), now)).packet_id, 5);
    assert!(!p.dup, "a first delivery");
    let mut recovered = stored(20);
    recovered.durable = recovered.durable.map(|r| DurableRef { recovered: true, ..r });
    assert!(sent(s.send(recovered, now)).dup, "loaded after a restart: it may have been sent before");
}

#[test]
fn settle_is_true_only_without_flows_and_frees_the_tables() {
    let mut s = QosState::new(10, 4);
    assert!(s.settle(), "a fresh state has nothing under way");
    let p = sent(s.send(delivery(QoS::AtLeastOnce, "a"), Instant::now()));
    assert!(!s.settle(), "an outbound QoS 1 in flight");
    assert!(s.on_puback(p.packet_id).is_some());
    assert!(s.flows.is_some(), "tables stay until settled");
    assert!(s.settle());
    assert!(s.flows.is_none(), "settling frees the empty tables");
    s.on_publish(&inbound(QoS::ExactlyOnce, 9)).unwrap();
    assert!(!s.settle(), "an inbound QoS 2 awaiting PUBREL");
    s.on_pubrel(9);
    assert!(s.settle());
    let next = sent(s.send(delivery(QoS::AtLeastOnce, "b"), Instant::now()));
    assert_ne!(next.packet_id, p.packet_id, "packet ids keep advancing after the tables were freed");
}
