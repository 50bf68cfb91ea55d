#!/usr/bin/env bash
# Durable QoS 1 publish throughput and publish → PUBACK latency of FleetMQ on RocksDB, with
# sync = "always" (group commit), sync = "always" with one sync per message, and sync = "interval".
#
#   loadtest/durable-bench.sh                 three 15 s runs (~2 minutes after the build)
#   loadtest/durable-bench.sh --quick         three 5 s runs
#   loadtest/durable-bench.sh --publishers 128 --inflight 50 --payload 1024 --out DIR
#
# Builds FleetMQ and fleetmq-loadtest in release mode (a first build compiles RocksDB: ~22 minutes
# on 2 cores, needs libclang-dev and a C++ compiler), then runs loadtest/bench/durable.py, which
# starts a fresh node with an empty data directory per mode. Results are in BENCHMARKS.md.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
source "$root/tests/setup.sh"
fleetmq_build_deps
fleetmq_target_dir
cargo build --release -p fleetmq -p fleetmq-loadtest >&2
bin="${CARGO_TARGET_DIR:-$root/target}/release"
exec python3 "$root/loadtest/bench/durable.py" \
    --fleetmq "$bin/fleetmq" \
    --loadtest "$bin/fleetmq-loadtest" \
    --base-conf "$root/loadtest/bench/fleetmq.toml" \
    "$@"
