# FleetMQ's machine set-up, sourced by `broker/run`, `tests/run`, `.ci/run` and the benchmark
# scripts: on a fresh Debian 12 machine with only the Rust toolchain, gcc and python3, it installs
# what the build and the tests need when it is missing (Debian packages with sudo when not root,
# Python packages with pip, tansu with cargo), and does nothing when everything is there.
#
#   fleetmq_build_deps   the build's C/C++ dependencies: libclang (bindgen, RocksDB), g++, and
#                        CMake, OpenSSL, libcurl, zlib and pkg-config (librdkafka)
#   fleetmq_test_deps    the build's, plus what the end-to-end tests drive: prlimit (util-linux),
#                        HAProxy, kcat, kafka-python and tansu (a Kafka-compatible broker)
#   fleetmq_target_dir   exports CARGO_TARGET_DIR (default ~/.cache/fleetmq-target) so every
#                        command shares one warm build

fleetmq_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

fleetmq_as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# Installs the named Debian packages that are not installed yet.
fleetmq_apt() {
    local missing=() pkg
    for pkg in "$@"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    echo "fleetmq setup: installing Debian packages: ${missing[*]}" >&2
    fleetmq_as_root apt-get update -qq
    fleetmq_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

fleetmq_target_dir() {
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/fleetmq-target}"
}

fleetmq_build_deps() {
    fleetmq_apt libclang-dev g++ cmake libssl-dev libcurl4-openssl-dev zlib1g-dev pkg-config
}

fleetmq_test_deps() {
    fleetmq_build_deps
    local pkgs=(util-linux haproxy kcat)
    python3 -c "import kafka" >/dev/null 2>&1 || python3 -m pip --version >/dev/null 2>&1 || pkgs+=(python3-pip)
    fleetmq_apt "${pkgs[@]}"
    if ! python3 -c "import kafka" >/dev/null 2>&1; then
        echo "fleetmq setup: installing kafka-python" >&2
        python3 -m pip install -q kafka-python 2>/dev/null \
            || python3 -m pip install -q --user kafka-python 2>/dev/null \
            || python3 -m pip install -q --break-system-packages kafka-python
    fi
    # The external-Kafka bridge tests produce into tansu, an independent Kafka-compatible broker.
    # Building it takes about 20 minutes on 2 cores, so the binary is kept outside the clone.
    local tools="$HOME/.cache/fleetmq-tools"
    if [ ! -x "$tools/bin/tansu" ]; then
        echo "fleetmq setup: building tansu 0.6.0 (once, about 20 minutes)" >&2
        CARGO_TARGET_DIR="$HOME/.cache/tansu-target" \
            cargo install tansu --locked --version 0.6.0 --features dynostore --root "$tools"
        rm -rf "$HOME/.cache/tansu-target"
    fi
    export FLEETMQ_TANSU="$tools/bin/tansu"
}
