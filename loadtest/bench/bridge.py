#!/usr/bin/env python3
"""Bridge benchmark, driven by loadtest/bridge-bench.sh.

Runs the same QoS 1 load against a fresh FleetMQ node with and without a bridge rule that copies
every publish into the embedded log, on the memory engine and on RocksDB (`sync = "always"`). The
load is many QoS 1 publishers into one subscriber on a wildcard, at full speed (throughput) and at
a fixed rate (latency). While a bridged run goes, `fleetmq-kafka-latency` reads the log over the
node's Kafka-protocol listener and times each record from its MQTT publisher to the Kafka consumer.
Prints one Markdown table: PUBACKs/s, delivered/s, publish → subscriber and publish → Kafka
consumer latency, lost, broker cores, and the bridge's cost against the same run unbridged
(target: at most 30 %). Standard library only; reuses the process handling of bench.py.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import types

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402

KAFKA_PORT = 21892
BRIDGE = ('[bridge]\nbatch_max_age_ms = 5\n[bridge.kafka]\nbind = "127.0.0.1:%d"\n'
          '[[bridge.rule]]\nfilter = "#"\nlog_topic = "bench"\npartitions = 8\nkey = "client_id"\n' % KAFKA_PORT)
ENGINES = [("memory", 'engine = "memory"\n'), ("rocksdb", 'engine = "rocksdb"\nsync = "always"\n')]


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--fleetmq", required=True)
    ap.add_argument("--loadtest", required=True)
    ap.add_argument("--kafka-latency", required=True)
    ap.add_argument("--base-conf", required=True, help="FleetMQ config whose [storage] table is replaced")
    ap.add_argument("--publishers", type=int, default=64)
    ap.add_argument("--inflight", type=int, default=20, help="unacknowledged publishes per publisher")
    ap.add_argument("--payload", type=int, default=256)
    ap.add_argument("--rate", type=int, default=100, help="per-publisher msg/s of the fixed-rate runs")
    ap.add_argument("--duration", default="15s")
    ap.add_argument("--quick", action="store_true", help="5 s runs")
    ap.add_argument("--out", help="directory for raw results [default: a new temporary directory]")
    args = ap.parse_args()
    duration, warmup = ("5s", "1s") if args.quick else (args.duration, "3s")
    secs = lambda d: float(d.rstrip("s"))  # noqa: E731
    base = open(args.base_conf).read()
    base = base[: base.index("[storage]")] if "[storage]" in base else base
    out = args.out or tempfile.mkdtemp(prefix="fleetmq-bridge-bench-")
    os.makedirs(out, exist_ok=True)
    print(f"machine: {bench.machine()}\nraw results: {out}", flush=True)
    rows = []
    for rate in (0, args.rate):
        load = ["fan-in", "--publishers", str(args.publishers), "--subscribers", "1", "--qos", "1",
                "--rate", str(rate), "--inflight", str(args.inflight), "--payload", str(args.payload),
                "--warmup", warmup, "--duration", duration, "--drain", "10s"]
        for engine, storage in ENGINES:
            for bridged in (False, True):
                name = f"{engine}, {'bridged' if bridged else 'not bridged'}, " + \
                    ("full speed" if rate == 0 else f"{rate}/s per publisher")
                workdir = tempfile.mkdtemp(prefix="fleetmq-bridge-run-")
                conf = os.path.join(workdir, "template.toml")
                with open(conf, "w") as fh:
                    fh.write(base + "[storage]\n" + storage + (BRIDGE if bridged else ""))
                cfg = types.SimpleNamespace(fleetmq=args.fleetmq, loadtest=args.loadtest, fleetmq_conf=conf)
                side = None
                if bridged:
                    side = [args.kafka_latency, "--bootstrap", f"127.0.0.1:{KAFKA_PORT}", "--topic", "bench",
                            "--warmup", f"{secs(warmup) + 0.5}s", "--duration", f"{secs(warmup) + secs(duration) + 0.5}s"]
                bench.wait_idle(0.2, 300)
                print(f"== {name}", flush=True)
                r = bench.run_one(cfg, name, "fleetmq", load, workdir, side=side)
                shutil.rmtree(workdir, ignore_errors=True)
                with open(os.path.join(out, "".join(c if c.isalnum() else "-" for c in name) + ".json"), "w") as fh:
                    json.dump(r, fh, indent=1)
                ps = (r.get("report") or {}).get("pubsub")
                if not ps:
                    print(f"   ERROR: {r.get('error')}", flush=True)
                rows.append((name, engine, rate, bridged, ps, r))
    lines = ["| run | PUBACKs/s | delivered/s | sub p50 / p99 (ms) | Kafka consumer rec/s | Kafka p50 / p99 (ms) "
             "| lost | broker cores | bridge cost |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    plain = {(e, rt): ps["publish_rate"] for _, e, rt, b, ps, _ in rows if ps and not b}
    for name, engine, rate, bridged, ps, r in rows:
        if ps is None:
            lines.append(f"| {name} | error: {r.get('error')} | | | | | | | |")
            continue
        lat = ps["latency"]
        kafka, kl, cost = "", "", ""
        side = r.get("side") or {}
        if bridged:
            if "latency" in side:
                kafka = f"{side['timed_rate']:,.0f}"
                kl = f"{side['latency']['p50_us'] / 1000:.2f} / {side['latency']['p99_us'] / 1000:.2f}"
            else:
                kafka = f"error: {side.get('error')}"
            if plain.get((engine, rate)) and rate == 0:
                cost = f"{(1 - ps['publish_rate'] / plain[(engine, rate)]) * 100:.0f} %"
        lines.append(f"| {name} | {ps['publish_rate']:,.0f} | {ps['deliver_rate']:,.0f} | "
                     f"{lat['p50_us'] / 1000:.2f} / {lat['p99_us'] / 1000:.2f} | {kafka} | {kl} | "
                     f"{ps['exactness']['lost']} | {r['broker_cores']:.2f} | {cost} |")
    lines.append(f"\nbridge: {BRIDGE.strip()!r}")
    lines.append(f"load: fleetmq-loadtest fan-in --publishers {args.publishers} --subscribers 1 --qos 1 "
                 f"--rate 0|{args.rate} --inflight {args.inflight} --payload {args.payload} "
                 f"--warmup {warmup} --duration {duration}")
    bench.write_table(out, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
