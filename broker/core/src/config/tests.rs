use super::*;

#[test]
fn empty_config_is_the_embedded_single_node() {
    let c = Config::parse("").unwrap();
    assert_eq!(c.listeners.len(), 1);
    assert_eq!(c.listeners[0].bind, "127.0.0.1:1883");
    assert_eq!(c.listeners[0].kind, ListenerKind::Tcp);
    assert!(c.auth.allow_anonymous);
    assert_eq!(c.mqtt.max_packet_size, 1_048_576);
}

#[test]
fn unknown_keys_are_errors_that_name_the_key() {
    let e = Config::parse("[mqtt]\nmax_keepalivee = 5\n").unwrap_err().to_string();
    assert!(e.contains("max_keepalivee"), "{e}");
    let e = Config::parse("[nodes]\nid = \"x\"\n").unwrap_err().to_string();
    assert!(e.contains("nodes"), "{e}");
}

#[test]
fn bad_values_name_the_key() {
    let e = Config::parse("[mqtt]\nreceive_maximum = 0\n").unwrap_err().to_string();
    assert!(e.contains("mqtt.receive_maximum"), "{e}");
    let e = Config::parse("[mqtt]\nmax_keepalive = 70000\n").unwrap_err().to_string();
    assert!(e.contains("max_keepalive"), "{e}");
    let e = Config::parse("[[listener]]\nbind = \"nowhere\"\n").unwrap_err().to_string();
    assert!(e.contains("listener[0].bind"), "{e}");
    let e = Config::parse("[[listener]]\nkind = \"tls\"\nbind = \"127.0.0.1:0\"\n").unwrap_err().to_string();
    assert!(e.contains("listener[0].cert"), "{e}");
    let e = Config::parse("[limits]\nqueue_overflow = \"explode\"\n").unwrap_err().to_string();
    assert!(e.contains("queue_overflow") || e.contains("explode"), "{e}");
    let e = Config::parse("[log]\nlevel = \"a=b=c\"\n").unwrap_err().to_string();
    assert!(e.contains("log.level"), "{e}");
    let e = Config::parse("[limits]\nidle_park_ms = 3600001\n").unwrap_err().to_string();
    assert!(e.contains("limits.idle_park_ms"), "{e}");
    assert_eq!(Config::parse("[limits]\nidle_park_ms = 0\n").unwrap().limits.idle_park_ms, 0);
}

#[test]
fn documented_examples_parse_and_validate() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) == Some("toml") {
            Config::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            seen += 1;
        }
    }
    assert!(seen >= 4, "expected documented examples in {}", dir.display());
    for cluster in ["cluster-front.toml", "cluster-shard.toml"] {
        let c = Config::load(&dir.join(cluster)).unwrap_or_else(|e| panic!("{cluster}: {e}"));
        assert_ne!(c.node.role, NodeRole::Standalone, "{cluster} documents a cluster role");
    }
}

#[test]
fn bridge_section_parses_and_names_the_bad_key() {
    let rule = "[[bridge.rule]]\nfilter = \"fleet/+/t\"\nlog_topic = \"telemetry\"\n";
    let c = Config::parse(rule).unwrap();
    assert!(c.bridge.enabled());
    assert_eq!((c.bridge.rules[0].partitions, c.bridge.rules[0].key.as_str()), (1, "client_id"));
    assert!(!Config::parse("").unwrap().bridge.enabled(), "off without rules");
    let bad = |extra: &str, key: &str| {
        let e = Config::parse(&format!("{extra}{rule}")).unwrap_err().to_string();
        assert!(e.contains(key), "expected {key} in: {e}");
    };
    bad("[bridge]\ntarget = \"kafka\"\n", "bridge.producer.brokers");
    bad("[bridge]\ntarget = \"pulsar\"\n", "pulsar");
    bad("[bridge]\nmax_buffer_bytes = 10\n", "bridge.max_buffer_bytes");
    bad("[bridge]\nbatch_max_age_ms = 0\n", "bridge.batch_max_age_ms");
    bad("[bridge]\non_buffer_full = \"panic\"\n", "panic");
    bad("[bridge.kafka]\nbind = \"x\"\n", "bridge.kafka.bind");
    bad("[bridge.log]\ncompression = \"gzip\"\n", "gzip");
    bad("[bridge.kafka]\nmax_connections = 0\n", "bridge.kafka.max_connections");
    bad("[bridge.kafka]\nmax_request_bytes = 1\n", "bridge.kafka.max_request_bytes");
    bad("[bridge.kafka]\nidle_timeout_ms = 1\n", "bridge.kafka.idle_timeout_ms");
    bad("[bridge.kafka]\nmax_fetch_bytes = 1\n", "bridge.kafka.max_fetch_bytes");
    bad("[bridge.log]\nsegments = 1\n", "segments");
    let second = |k: &str| format!("[[bridge.rule]]\nfilter = \"a/#\"\nlog_topic = \"telemetry\"\n{k}\n");
    bad(&second("key = \"device\""), "bridge.rule[0].key");
    bad(&second("partitions = 0"), "bridge.rule[0].partitions");
    bad(&second("partitions = 4"), "bridge.rule[1].partitions");
    bad("[[bridge.rule]]\nfilter = \"$share/g/a\"\nlog_topic = \"x\"\n", "bridge.rule[0].filter");
    bad("[[bridge.rule]]\nfilter = \"a/#/b\"\nlog_topic = \"x\"\n", "bridge.rule[0].filter");
    bad("[[bridge.rule]]\nfilter = \"a\"\nlog_topic = \"bad topic\"\n", "bridge.rule[0].log_topic");
    let front = format!("[node]\nid = \"f1\"\nrole = \"front\"\n{MEMBERS}");
    let e = Config::parse(&format!("{rule}{front}")).unwrap_err().to_string();
    assert!(e.contains("bridge"), "{e}");
}

#[test]
fn bridge_producer_section_parses_and_names_the_bad_key() {
    let rule = "[[bridge.rule]]\nfilter = \"fleet/+/t\"\nlog_topic = \"telemetry\"\n";
    let kafka = "[bridge]\ntarget = \"kafka\"\n[bridge.producer]\nbrokers = [\"k1:9092\", \"10.0.0.2:9093\"]\n";
    let c = Config::parse(&format!(
        "{kafka}compression = \"zstd\"\n[bridge.producer.properties]\n\"batch.size\" = \"65536\"\n{rule}"
    ))
    .unwrap();
    let p = c.bridge.producer.producer_config("n7");
    assert_eq!((p.client_id.as_str(), p.compression.as_str(), p.brokers.len()), ("fleetmq-n7", "zstd", 2));
    assert!(p.properties.contains(&("batch.size".into(), "65536".into())));
    assert!(p.properties.contains(&("security.protocol".into(), "plaintext".into())));
    let sasl = "security_protocol = \"sasl_ssl\"\nsasl_mechanism = \"SCRAM-SHA-512\"\nsasl_username = \"u\"\nsasl_password = \"p\"\ntls_verify = false\n";
    let p = Config::parse(&format!("{kafka}{sasl}{rule}")).unwrap().bridge.producer.producer_config("n");
    for kv in [
        ("sasl.mechanism", "SCRAM-SHA-512"),
        ("security.protocol", "sasl_ssl"),
        ("enable.ssl.certificate.verification", "false"),
    ] {
        assert!(p.properties.contains(&(kv.0.into(), kv.1.into())), "{kv:?} in {:?}", p.properties);
    }
    let bad = |extra: &str, key: &str| {
        let e = Config::parse(&format!("{kafka}{extra}{rule}")).unwrap_err().to_string();
        assert!(e.contains(key), "expected {key} in: {e}");
    };
    for brokers in ["[\"nohost\"]", "[\"h:0\"]", "[]"] {
        let head = format!("[bridge]\ntarget = \"kafka\"\n[bridge.producer]\nbrokers = {brokers}\n");
        let e = Config::parse(&format!("{head}{rule}")).unwrap_err().to_string();
        assert!(e.contains("bridge.producer.brokers"), "{brokers}: {e}");
    }
    bad("message_timeout_ms = 10\n", "bridge.producer.message_timeout_ms");
    bad("replication_factor = 0\n", "bridge.producer.replication_factor");
    bad("compression = \"brotli\"\n", "brotli");
    bad("security_protocol = \"sasl_plaintext\"\n", "bridge.producer.sasl_mechanism");
    bad("security_protocol = \"sasl_plaintext\"\nsasl_mechanism = \"GSSAPI\"\n", "bridge.producer.sasl_mechanism");
    bad("security_protocol = \"sasl_plaintext\"\nsasl_mechanism = \"PLAIN\"\n", "bridge.producer.sasl_username");
    bad("sasl_mechanism = \"PLAIN\"\n", "bridge.producer.sasl_mechanism");
    bad("tls_ca_file = \"/etc/hostname\"\n", "bridge.producer.tls_ca_file");
    bad("security_protocol = \"ssl\"\ntls_ca_file = \"/no/such/ca.pem\"\n", "bridge.producer.tls_ca_file");
    bad("security_protocol = \"ssl\"\ntls_cert_file = \"/etc/hostname\"\n", "bridge.producer.tls_key_file");
    bad("[bridge.producer.properties]\nacks = \"1\"\n", "bridge.producer.properties.acks");
    bad("[bridge.kafka]\nbind = \"127.0.0.1:0\"\n", "bridge.kafka.bind");
    bad("unknown = 1\n", "unknown");
    let e = Config::parse(&format!("[bridge.producer]\nbrokers = [\"k:1\"]\n{rule}")).unwrap_err().to_string();
    assert!(e.contains("bridge.producer.brokers"), "brokers without target = kafka: {e}");
}

#[test]
fn storage_section_parses_and_validates() {
    // The embedded default keeps what it acknowledges, in ./fleetmq-data.
    let c = Config::parse("").unwrap();
    assert_eq!(
        (c.storage.engine, c.storage.sync, c.storage.sync_interval_ms),
        (StorageEngine::Rocksdb, SyncSetting::Interval, 100)
    );
    assert_eq!(c.node.data_dir, std::path::PathBuf::from("./fleetmq-data"));
    let c = Config::parse("[storage]\nengine = \"memory\"\n").unwrap();
    assert_eq!(c.storage.engine, StorageEngine::Memory);
    let c = Config::parse("[storage]\nengine = \"rocksdb\"\nsync = \"interval\"\nsync_interval_ms = 5\n").unwrap();
    assert_eq!(
        (c.storage.engine, c.storage.sync, c.storage.sync_interval_ms),
        (StorageEngine::Rocksdb, SyncSetting::Interval, 5)
    );
    let e = Config::parse("[storage]\nsync_interval_ms = 0\n").unwrap_err().to_string();
    assert!(e.contains("storage.sync_interval_ms"), "{e}");
    assert_eq!(Config::parse("[storage]\nmax_group_writes = 1\n").unwrap().storage.max_group_writes, 1);
    let e = Config::parse("[storage]\nmax_group_writes = 0\n").unwrap_err().to_string();
    assert!(e.contains("storage.max_group_writes"), "{e}");
    let e = Config::parse("[storage]\nsync = \"never\"\n").unwrap_err().to_string();
    assert!(e.contains("never"), "{e}");
}

const MEMBERS: &str = "[[cluster.shard]]\nid = \"s1\"\naddr = \"127.0.0.1:7001\"\n\
                       [[cluster.shard]]\nid = \"s2\"\naddr = \"127.0.0.1:7002\"\n\
                       [[cluster.front]]\nid = \"f1\"\naddr = \"127.0.0.1:1883\"\n";

#[test]
fn cluster_roles_parse_and_name_the_bad_key() {
    let shard = Config::parse(&format!("[node]\nid = \"s2\"\nrole = \"shard\"\n{MEMBERS}")).unwrap();
    assert_eq!(shard.node.role, NodeRole::Shard);
    assert!(shard.listeners.is_empty(), "a shard gets no default client listener");
    assert_eq!(shard.cluster.internal_bind("s2"), Some("127.0.0.1:7002"));
    let front = Config::parse(&format!("[node]\nid = \"f1\"\nrole = \"front\"\n{MEMBERS}")).unwrap();
    assert_eq!((front.node.role, front.listeners.len()), (NodeRole::Front, 1));
    assert_eq!(Config::parse("").unwrap().node.role, NodeRole::Standalone);

    let bad = |extra: &str, key: &str| {
        let e = Config::parse(&format!("[node]\nid = \"s1\"\nrole = \"shard\"\n{extra}{MEMBERS}")).unwrap_err();
        assert!(e.to_string().contains(key), "expected {key} in: {e}");
    };
    bad("[cluster]\nheartbeat_ms = 0\n", "cluster.heartbeat_ms");
    bad("[cluster]\nheartbeat_timeout_ms = 10\nheartbeat_ms = 10\n", "cluster.heartbeat_timeout_ms");
    bad("[cluster]\nvnodes = 0\n", "cluster.vnodes");
    bad("[cluster]\nstream_window = 1\n", "cluster.stream_window");
    bad("[cluster]\non_shard_loss = \"panic\"\n", "on_shard_loss");
    bad("[cluster]\nbind = \"x\"\n", "cluster.bind");
    bad("[cluster]\nshards = 3\n", "shards");
    let tls = "[cluster.tls]\ncert = \"n.pem\"\nkey = \"n.key\"\nca = \"ca.pem\"\n";
    bad(&format!("{tls}client_cert = \"c.pem\"\n"), "cluster.tls.client_key");
    bad(&format!("{tls}server_name = \"not a name!\"\n"), "cluster.tls.server_name");
    bad(&format!("{tls}verify = false\n"), "verify");
    let with_tls = Config::parse(&format!("[node]\nid = \"s1\"\nrole = \"shard\"\n{tls}{MEMBERS}")).unwrap();
    assert_eq!(with_tls.cluster.tls.map(|t| t.ca), Some("ca.pem".into()));
    bad("[[listener]]\nbind = \"127.0.0.1:1\"\n", "listener");
    let e = Config::parse(&format!("[node]\nid = \"s9\"\nrole = \"shard\"\n{MEMBERS}")).unwrap_err().to_string();
    assert!(e.contains("node.id"), "{e}");
    let e = Config::parse("[node]\nrole = \"front\"\n").unwrap_err().to_string();
    assert!(e.contains("cluster.shard"), "{e}");
    let dup = "[[cluster.shard]]\nid = \"s1\"\naddr = \"127.0.0.1:7003\"\n";
    let e = Config::parse(&format!("[node]\nid = \"s1\"\nrole = \"shard\"\n{MEMBERS}{dup}")).unwrap_err().to_string();
    assert!(e.contains("cluster.shard[2].id"), "{e}");
    let e =
        Config::parse(&format!("[node]\nid = \"f1\"\nrole = \"front\"\n[storage]\nengine = \"rocksdb\"\n{MEMBERS}"))
            .unwrap_err()
            .to_string();
    assert!(e.contains("storage.engine"), "{e}");
    // A front stores nothing: without `[storage] engine` it is memory, not the RocksDB default.
    let front = Config::parse(&format!("[node]\nid = \"f1\"\nrole = \"front\"\n{MEMBERS}")).unwrap();
    assert_eq!(front.storage.engine, StorageEngine::Memory);
    let shard = Config::parse(&format!("[node]\nid = \"s1\"\nrole = \"shard\"\n{MEMBERS}")).unwrap();
    assert_eq!(shard.storage.engine, StorageEngine::Rocksdb);
}

#[test]
fn leaving_shards_leave_the_ring_but_not_the_membership() {
    let text = |node: &str, extra: &str| {
        format!(
            "[node]\nid = \"{node}\"\nrole = \"shard\"\n\
             [[cluster.shard]]\nid = \"s1\"\naddr = \"127.0.0.1:7001\"\n{extra}\
             [[cluster.shard]]\nid = \"s2\"\naddr = \"127.0.0.1:7002\"\n"
        )
    };
    let c = Config::parse(&text("s1", "leaving = true\n")).unwrap();
    assert_eq!(c.cluster.ring_shards().collect::<Vec<_>>(), ["s2"], "a leaving shard owns nothing");
    assert_eq!(c.cluster.shards.len(), 2, "but stays a member while it hands over");
    let all_leaving = format!("{}leaving = true\n", text("s1", "leaving = true\n"));
    let e = Config::parse(&all_leaving).unwrap_err().to_string();
    assert!(e.contains("cluster.shard") && e.contains("leaving"), "{e}");
    let front = "[[cluster.front]]\nid = \"f1\"\naddr = \"127.0.0.1:1883\"\nleaving = true\n";
    let e = Config::parse(&format!("{}{front}", text("s1", ""))).unwrap_err().to_string();
    assert!(e.contains("cluster.front[0].leaving"), "{e}");
    let e = Config::parse(&text("s1", "leaving = \"soon\"\n")).unwrap_err().to_string();
    assert!(e.contains("leaving"), "{e}");
}
