#!/usr/bin/env python3
"""Durable QoS 1 publish benchmark, driven by loadtest/durable-bench.sh.

Runs the same load against a fresh FleetMQ node on the RocksDB engine in three storage modes:
`sync = "always"` with group commit (the default until the embedded default became `interval`), `sync = "always"` with `max_group_writes = 1`
(one write and one WAL sync per message: the baseline group commit is measured against) and
`sync = "interval"` (100 ms). The load is many QoS 1 publishers into one persistent subscriber, so
every message is stored (queue entry + message record) before its PUBACK and deleted again once
the subscriber acknowledges it. Prints one Markdown table: publish throughput (PUBACKs per second),
publish → PUBACK latency, delivery and loss, and the group-commit speed-up. Standard library only;
reuses the process handling of bench.py.
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

MODES = [
    ("always, group commit", 'sync = "always"\n'),
    ("always, one sync per message", 'sync = "always"\nmax_group_writes = 1\n'),
    ("interval (100 ms)", 'sync = "interval"\nsync_interval_ms = 100\n'),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--fleetmq", required=True)
    ap.add_argument("--loadtest", required=True)
    ap.add_argument("--base-conf", required=True, help="FleetMQ config whose [storage] table is replaced")
    ap.add_argument("--publishers", type=int, default=64)
    ap.add_argument("--inflight", type=int, default=20, help="unacknowledged publishes per publisher")
    ap.add_argument("--payload", type=int, default=256)
    ap.add_argument("--duration", default="15s")
    ap.add_argument("--quick", action="store_true", help="5 s runs")
    ap.add_argument("--out", help="directory for raw results [default: a new temporary directory]")
    args = ap.parse_args()
    duration, warmup = ("5s", "1s") if args.quick else (args.duration, "3s")
    base = open(args.base_conf).read()
    base = base[: base.index("[storage]")] if "[storage]" in base else base
    out = args.out or tempfile.mkdtemp(prefix="fleetmq-durable-bench-")
    os.makedirs(out, exist_ok=True)
    tmp = tempfile.gettempdir()
    fstype = subprocess.run(["df", "--output=fstype", tmp], capture_output=True, text=True).stdout.split()[-1:]
    fstype = fstype[0] if fstype else "?"
    print(f"machine: {bench.machine()}\ndata directories in {tmp} ({fstype}; set TMPDIR to move them)\n"
          f"raw results: {out}", flush=True)
    if fstype in ("tmpfs", "ramfs"):
        print("warning: syncs on a RAM file system cost nothing; results say nothing about disks", flush=True)
    load = ["fan-in", "--publishers", str(args.publishers), "--subscribers", "1", "--qos", "1", "--rate", "0",
            "--persistent", "--inflight", str(args.inflight), "--payload", str(args.payload),
            "--warmup", warmup, "--duration", duration, "--drain", "10s"]
    rows = []
    for name, storage in MODES:
        workdir = tempfile.mkdtemp(prefix="fleetmq-durable-run-")
        conf = os.path.join(workdir, "template.toml")
        with open(conf, "w") as fh:
            fh.write(base + '[storage]\nengine = "rocksdb"\n' + storage)
        cfg = types.SimpleNamespace(fleetmq=args.fleetmq, loadtest=args.loadtest, fleetmq_conf=conf)
        bench.wait_idle(0.2, 300)
        print(f"== {name}", flush=True)
        r = bench.run_one(cfg, name, "fleetmq", load, workdir)
        r["storage"] = storage
        shutil.rmtree(workdir, ignore_errors=True)
        with open(os.path.join(out, "".join(c if c.isalnum() else "-" for c in name) + ".json"), "w") as fh:
            json.dump(r, fh, indent=1)
        ps = (r.get("report") or {}).get("pubsub")
        if not ps:
            print(f"   ERROR: {r.get('error')}", flush=True)
            rows.append((name, None, r))
            continue
        print(f"   PUBACK/s {ps['publish_rate']:,.0f}  ack p99 {ps['ack_latency']['p99_us'] / 1000:.2f} ms"
              f"  lost {ps['exactness']['lost']}  broker {r['broker_cores']:.2f} cores", flush=True)
        rows.append((name, ps, r))
    lines = ["| storage mode | PUBACKs/s | ack p50 (ms) | ack p99 (ms) | delivered/s | lost | broker cores |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, ps, r in rows:
        if ps is None:
            lines.append(f"| {name} | error: {r.get('error')} | | | | | |")
            continue
        a = ps["ack_latency"]
        lines.append(f"| {name} | {ps['publish_rate']:,.0f} | {a['p50_us'] / 1000:.2f} | {a['p99_us'] / 1000:.2f} | "
                     f"{ps['deliver_rate']:,.0f} | {ps['exactness']['lost']} | {r['broker_cores']:.2f} |")
    rate = {name: ps["publish_rate"] for name, ps, _ in rows if ps}
    group, single = rate.get(MODES[0][0]), rate.get(MODES[1][0])
    if group and single:
        verdict = "met" if group >= 10 * single else "missed"
        lines.append(f"\ngroup commit speed-up (always): {group / single:.1f}x one sync per message "
                     f"(target 10x: {verdict})")
    lines.append(f"\nload: fleetmq-loadtest {' '.join(load)}")
    bench.write_table(out, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
