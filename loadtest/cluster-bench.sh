#!/usr/bin/env bash
# Cluster benchmark: 2 fronts + 3 shards on one machine against one standalone node, same load
# (QoS 1 p2p, half the pairs through each front), at full speed and at a fixed rate; reports
# delivered msg/s, p50/p99 latency and broker CPU per 1000 messages (all node processes).
#
#   loadtest/cluster-bench.sh              full run (~2 minutes)
#   loadtest/cluster-bench.sh --quick      smoke run
#   loadtest/cluster-bench.sh --out DIR    keep raw JSON results in DIR
#
# Builds fleetmq and fleetmq-loadtest in release mode; needs python3 (standard library only).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
source "$root/tests/setup.sh"
fleetmq_build_deps
fleetmq_target_dir
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
cargo build --release -p fleetmq -p fleetmq-loadtest >&2
bin="${CARGO_TARGET_DIR:-$root/target}/release"
exec python3 "$root/loadtest/bench/cluster.py" --fleetmq "$bin/fleetmq" --loadtest "$bin/fleetmq-loadtest" "$@"
