#!/usr/bin/env bash
# FleetMQ vs Mosquitto vs a raw TCP relay, same scenarios, same load tool, one run, alternating.
#
#   loadtest/bench.sh            full run (~6 minutes of runs on an idle 2-core machine)
#   loadtest/bench.sh --quick    smoke run (~2 minutes)
#   loadtest/bench.sh --out DIR  keep raw JSON results, table.md and results.json in DIR
#   loadtest/bench.sh --only "fan-in"   run only the scenarios whose name contains the text
#
# On a fresh Debian machine it installs Mosquitto and the build's C/C++ dependencies (tests/setup.sh) from
# the distribution's packages if missing, builds FleetMQ, fleetmq-loadtest and fleetmq-relay in
# release mode, raises the open-files limit, and runs loadtest/bench/bench.py, which starts a fresh broker per run on a
# loopback port (FleetMQ 21883, Mosquitto 21884, relay 21885) and prints one table. Before the
# first run it waits (up to --max-wait seconds, default 600) until other processes use less than
# --max-busy cores (default 0.2), up to 300 s (--max-wait-run) before each run, and repeats a run
# disturbed by other processes (--max-busy-run, --retries). Results are in BENCHMARKS.md.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

source "$root/tests/setup.sh"
# The release build's C/C++ dependencies, and the peer it is measured against.
fleetmq_build_deps
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || fleetmq_apt mosquitto
fleetmq_target_dir
mosquitto_bin="$(command -v mosquitto || echo /usr/sbin/mosquitto)"

# 10k idle connections need more descriptors than the usual soft limit of 1024.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt 12000 ]; then
    echo "warning: open-files limit is $(ulimit -n); the idle-connection scenario needs ~10000 per process" >&2
fi

cargo build --release -p fleetmq -p fleetmq-loadtest >&2
bin="${CARGO_TARGET_DIR:-$root/target}/release"

exec python3 "$root/loadtest/bench/bench.py" \
    --fleetmq "$bin/fleetmq" \
    --loadtest "$bin/fleetmq-loadtest" \
    --relay "$bin/fleetmq-relay" \
    --mosquitto "$mosquitto_bin" \
    --fleetmq-conf "$root/loadtest/bench/fleetmq.toml" \
    --mosquitto-conf "$root/loadtest/bench/mosquitto.conf" \
    "$@"
