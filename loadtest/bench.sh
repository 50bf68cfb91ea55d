#!/usr/bin/env bash
# FleetMQ vs Mosquitto vs a raw TCP relay, same scenarios, same load tool, one run, alternating.
#
#   loadtest/bench.sh            full run (~6 minutes of runs on an idle 2-core machine)
#   loadtest/bench.sh --quick    smoke run (~2 minutes)
#   loadtest/bench.sh --out DIR  keep raw JSON results, table.md and results.json in DIR
#   loadtest/bench.sh --only "fan-in"   run only the scenarios whose name contains the text
#
# On a fresh Debian machine it installs Mosquitto, python3 and the build's C/C++ dependencies from
# the distribution's packages if missing, builds FleetMQ, fleetmq-loadtest and fleetmq-relay in
# release mode, raises the open-files limit, and runs loadtest/bench/bench.py, which starts a fresh broker per run on a
# loopback port (FleetMQ 21883, Mosquitto 21884, relay 21885) and prints one table. Before the
# first run it waits (up to --max-wait seconds, default 600) until other processes use less than
# --max-busy cores (default 0.2), up to 300 s (--max-wait-run) before each run, and repeats a run
# disturbed by other processes (--max-busy-run, --retries). Results are in BENCHMARKS.md.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

missing=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
# What the release build needs: bindgen's libclang for RocksDB, and CMake, OpenSSL, libcurl and
# zlib for librdkafka (the external Kafka bridge target).
for pkg in libclang-dev g++ cmake libssl-dev libcurl4-openssl-dev zlib1g-dev pkg-config; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing from Debian packages: ${missing[*]}" >&2
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi
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
