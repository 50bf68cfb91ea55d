//! MQTT 5.0 delivery features: overlapping subscriptions with subscription identifiers, no-local,
//! retain-as-published, message expiry, and forwarding of publish properties.

use bytes::Bytes;
use fleetmq_tests::v5::{self, v5_client};
use fleetmq_tests::{unique, Broker};
use rumqttc::v5::mqttbytes::v5::{Filter, PublishProperties, SubscribeReasonCode};
use rumqttc::v5::mqttbytes::QoS;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(5);
const QUIET: Duration = Duration::from_millis(800);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_subscriptions_deliver_one_copy_with_every_identifier() {
    let b = Broker::start("");
    let base = unique("overlap");
    let mut sub = v5_client(b.tcp_addr(), &unique("sub"), true).await;
    let codes = sub.subscribe_filter(Filter::new(format!("{base}/+"), QoS::AtMostOnce), Some(1)).await;
    assert_eq!(codes, vec![SubscribeReasonCode::Success(QoS::AtMostOnce)]);
    let codes = sub.subscribe_filter(Filter::new(format!("{base}/#"), QoS::AtLeastOnce), Some(2)).await;
    assert_eq!(codes, vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)]);

    let mut publ = v5_client(b.tcp_addr(), &unique("pub"), true).await;
    publ.publish(&format!("{base}/x"), QoS::ExactlyOnce, false, "both").await;
    let got = sub.wait_for_publishes(1, WAIT).await.remove(0);
    sub.expect_no_publish(QUIET).await;
    assert_eq!(got.qos, QoS::AtLeastOnce, "highest QoS of the matching subscriptions");
    let mut ids = got.properties.map(|p| p.subscription_identifiers).unwrap_or_default();
    ids.sort_unstable();
    assert_eq!(ids, vec![1, 2], "subscription identifiers of both subscriptions");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_local_suppresses_own_messages_only() {
    let b = Broker::start("");
    let topic = unique("nolocal");
    let control = unique("local");
    let mut me = v5_client(b.tcp_addr(), &unique("me"), true).await;
    let mut other = v5_client(b.tcp_addr(), &unique("other"), true).await;
    let mut filter = Filter::new(&topic, QoS::AtLeastOnce);
    filter.nolocal = true;
    me.subscribe_filter(filter, None).await;
    me.subscribe_ok(&control, QoS::AtLeastOnce).await;
    other.subscribe_ok(&topic, QoS::AtLeastOnce).await;

    me.publish(&topic, QoS::AtLeastOnce, false, "mine").await;
    assert_eq!(other.wait_for_publishes(1, WAIT).await[0].payload, "mine");
    me.publish(&control, QoS::AtLeastOnce, false, "echo").await;
    let got = me.wait_for_publishes(1, WAIT).await;
    assert_eq!(got[0].payload, "echo", "without no-local a client gets its own message");
    me.expect_no_publish(QUIET).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retain_as_published_keeps_the_retain_flag() {
    let b = Broker::start("");
    let topic = unique("rap");
    let mut keep = v5_client(b.tcp_addr(), &unique("keep"), true).await;
    let mut clear = v5_client(b.tcp_addr(), &unique("clear"), true).await;
    let mut filter = Filter::new(&topic, QoS::AtLeastOnce);
    filter.preserve_retain = true;
    keep.subscribe_filter(filter, None).await;
    clear.subscribe_ok(&topic, QoS::AtLeastOnce).await;

    let mut publ = v5_client(b.tcp_addr(), &unique("pub"), true).await;
    publ.publish(&topic, QoS::AtLeastOnce, true, "flagged").await;
    let k = keep.wait_for_publishes(1, WAIT).await.remove(0);
    let c = clear.wait_for_publishes(1, WAIT).await.remove(0);
    assert!(k.retain, "retain-as-published subscription lost the flag");
    assert!(!c.retain, "a live message must arrive with retain 0 without retain-as-published");
}

fn expiring(secs: u32) -> PublishProperties {
    PublishProperties { message_expiry_interval: Some(secs), ..Default::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_queued_message_is_not_delivered() {
    let b = Broker::start("");
    let topic = unique("expire");
    let mut sub = v5_client(b.tcp_addr(), "late-reader", false).await;
    sub.subscribe_ok(&topic, QoS::AtLeastOnce).await;
    sub.disconnect().await;

    let mut publ = v5_client(b.tcp_addr(), &unique("pub"), true).await;
    publ.publish_with(&topic, QoS::AtLeastOnce, false, "short", expiring(1)).await;
    publ.publish(&topic, QoS::AtLeastOnce, false, "forever").await;
    tokio::time::sleep(Duration::from_millis(2100)).await;

    let mut sub = v5_client(b.tcp_addr(), "late-reader", false).await;
    assert!(sub.connack.session_present);
    let got = sub.wait_for_publishes(1, WAIT).await;
    assert_eq!(got[0].payload, "forever");
    sub.expect_no_publish(QUIET).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remaining_expiry_is_forwarded() {
    let b = Broker::start("");
    let topic = unique("remaining");
    let mut live = v5_client(b.tcp_addr(), &unique("live"), true).await;
    live.subscribe_ok(&topic, QoS::AtLeastOnce).await;
    let mut sub = v5_client(b.tcp_addr(), "slow-reader", false).await;
    sub.subscribe_ok(&topic, QoS::AtLeastOnce).await;
    sub.disconnect().await;

    let mut publ = v5_client(b.tcp_addr(), &unique("pub"), true).await;
    publ.publish_with(&topic, QoS::AtLeastOnce, false, "ticking", expiring(60)).await;
    let now = live.wait_for_publishes(1, WAIT).await.remove(0);
    let e = now.properties.and_then(|p| p.message_expiry_interval);
    assert!(matches!(e, Some(59..=60)), "live delivery expiry {e:?}");

    tokio::time::sleep(Duration::from_millis(2100)).await;
    let mut sub = v5_client(b.tcp_addr(), "slow-reader", false).await;
    let later = sub.wait_for_publishes(1, WAIT).await.remove(0);
    let e = later.properties.and_then(|p| p.message_expiry_interval);
    assert!(matches!(e, Some(50..=58)), "after 2 s queued the remaining expiry must be lower than 60: {e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_properties_are_forwarded_unchanged() {
    let b = Broker::start("");
    let topic = unique("props");
    let mut sub = v5_client(b.tcp_addr(), &unique("sub"), true).await;
    sub.subscribe_ok(&topic, QoS::AtLeastOnce).await;
    let user = vec![
        ("k1".to_string(), "v1".to_string()),
        ("k2".to_string(), "v2".to_string()),
        ("k1".to_string(), "v3".to_string()),
    ];
    let props = PublishProperties {
        payload_format_indicator: Some(1),
        content_type: Some("application/json".into()),
        response_topic: Some("reply/here".into()),
        correlation_data: Some(Bytes::from_static(b"\x00corr\xff")),
        user_properties: user.clone(),
        ..Default::default()
    };
    let mut publ = v5_client(b.tcp_addr(), &unique("pub"), true).await;
    publ.publish_with(&topic, QoS::AtLeastOnce, false, "{\"t\":21}", props).await;
    let got = sub.wait_for_publishes(1, WAIT).await.remove(0);
    assert_eq!(v5::topic(&got), topic);
    let p = got.properties.expect("properties were dropped");
    assert_eq!(p.payload_format_indicator, Some(1));
    assert_eq!(p.content_type.as_deref(), Some("application/json"));
    assert_eq!(p.response_topic.as_deref(), Some("reply/here"));
    assert_eq!(p.correlation_data.as_deref(), Some(&b"\x00corr\xff"[..]));
    assert_eq!(p.user_properties, user, "user properties must keep their order");
}
