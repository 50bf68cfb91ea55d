#!/usr/bin/env bash
# Bridge cost: QoS 1 throughput and latency of FleetMQ with and without a bridge rule copying every
# publish into the embedded log, on the memory engine and on RocksDB, and publish → Kafka consumer
# latency read over the node's Kafka-protocol listener.
#
#   loadtest/bridge-bench.sh                 eight 15 s runs (~4 minutes after the build)
#   loadtest/bridge-bench.sh --quick         eight 5 s runs
#   loadtest/bridge-bench.sh --publishers 128 --rate 50 --payload 1024 --out DIR
#
# Builds FleetMQ, fleetmq-loadtest and fleetmq-kafka-latency in release mode (a first build compiles
# RocksDB and librdkafka: ~25 minutes on 2 cores; tests/setup.sh installs what it needs), then runs loadtest/bench/bridge.py, which prints the table and keeps it in OUT/table.md.
# Recorded runs and what they found: BENCHMARKS.md, "Bridge cost".
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
source "$root/tests/setup.sh"
fleetmq_build_deps
fleetmq_target_dir
cargo build --release -p fleetmq -p fleetmq-loadtest >&2
bin="${CARGO_TARGET_DIR:-$root/target}/release"
exec python3 "$root/loadtest/bench/bridge.py" \
    --fleetmq "$bin/fleetmq" \
    --loadtest "$bin/fleetmq-loadtest" \
    --kafka-latency "$bin/fleetmq-kafka-latency" \
    --base-conf "$root/loadtest/bench/fleetmq.toml" \
    "$@"
