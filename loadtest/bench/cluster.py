#!/usr/bin/env python3
"""Cluster benchmark, driven by loadtest/cluster-bench.sh: 2 fronts + 3 shards on one machine
against one standalone node, same load, same run.

The load is QoS 1 p2p: each pair's publisher and subscriber have their own client ids, so they
usually live on different shards and every message crosses front → shard → shard → front. Both
layouts get the same load shape: two load-tool processes at once with half the pairs each (for the
cluster one per front; distinct run ids). It runs once at full speed and once at a fixed rate
(--rate, per publisher), and reports delivered msg/s (sum), p50/p99 latency (the higher of the two
processes' percentiles), the cores all broker processes used together over their busiest window of
the measurement length (CPU ticks of every process summed at each sample, so the windows line up),
and CPU milliseconds per 1000 delivered messages — the cost of the extra hops. Standard library
only; reuses bench.py.
"""
import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402

IP = "127.0.0.1"


def free_port():
    s = socket.socket()
    s.bind((IP, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start_node(fleetmq, workdir, name, text):
    path = os.path.join(workdir, f"{name}.toml")
    open(path, "w").write(text)
    log = open(os.path.join(workdir, f"{name}.log"), "ab")
    return subprocess.Popen([fleetmq, "--config", path], cwd=workdir, stdout=log, stderr=log)


def start_cluster(fleetmq, workdir):
    """3 shards + 2 fronts; returns (processes, front ports)."""
    shard_ports = [free_port() for _ in range(3)]
    front_ports = [free_port() for _ in range(2)]
    members = "".join(f'[[cluster.shard]]\nid = "shard-{i + 1}"\naddr = "{IP}:{p}"\n' for i, p in enumerate(shard_ports))
    members += "".join(f'[[cluster.front]]\nid = "front-{i + 1}"\naddr = "{IP}:{p}"\n' for i, p in enumerate(front_ports))
    # Link-up lines are logged at info: the run starts once every shard logged them.
    # In memory, as the recorded runs were (the default engine is RocksDB).
    common = ('[log]\nlevel = "fleetmq_cluster=info,warn"\n[sys]\ninterval_ms = 0\n'
              '[limits]\nmax_connections = 100000\n[storage]\nengine = "memory"\n')
    procs = []
    for i in range(3):
        text = f'[node]\nid = "shard-{i + 1}"\nrole = "shard"\ndata_dir = "data-{i}"\n{common}{members}'
        procs.append(start_node(fleetmq, workdir, f"shard-{i + 1}", text))
    for i, port in enumerate(front_ports):
        text = (f'[node]\nid = "front-{i + 1}"\nrole = "front"\n{common}'
                f'[[listener]]\nkind = "tcp"\nbind = "{IP}:{port}"\n{members}')
        procs.append(start_node(fleetmq, workdir, f"front-{i + 1}", text))
    for port, proc in zip(front_ports, procs[3:]):
        bench.wait_port(port, proc)
    deadline = time.monotonic() + 30
    for i in range(3):
        log = os.path.join(workdir, f"shard-{i + 1}.log")
        while sum(f"shard link up peer=shard-{j + 1}" in open(log).read() for j in range(3) if j != i) < 2:
            if time.monotonic() > deadline:
                raise RuntimeError(f"shard-{i + 1} did not link to the other shards")
            time.sleep(0.1)
    return procs, front_ports


class TotalSampler(bench.Sampler):
    """bench.Sampler over several processes at once: CPU ticks summed at each sample."""

    def __init__(self, pids):
        super().__init__(pids[0])
        self.pids = pids

    def run(self):
        while not self.stop.is_set():
            got = [bench.read_proc(p) for p in self.pids]
            if all(got):
                self.samples.append((time.monotonic(), sum(g[0] for g in got), sum(g[1] for g in got)))
            self.stop.wait(bench.SAMPLE)


def run(loadtest, ports, load, pids, secs):
    """Runs one load-tool process per port at once; returns (reports, broker cores, commands)."""
    sampler = TotalSampler(pids)
    sampler.start()
    cmds = []
    for i, port in enumerate(ports):
        cmds.append([loadtest, "--port", str(port), "--no-progress", "--json", "--run-id", f"c{i}-{time.time_ns()}"]
                    + load)
    running = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in cmds]
    reports = []
    for p in running:
        out, err = p.communicate(timeout=secs + 200)
        line = out.strip().splitlines()[-1] if out.strip() else ""
        reports.append(json.loads(line) if line else {"error": err.strip().splitlines()[-1:]})
    sampler.stop.set()
    sampler.join()
    cores = sampler.busiest(secs)
    return reports, cores, [" ".join(c) for c in cmds]


def summarize(reports, cores):
    pubsub = [r.get("pubsub") for r in reports if r.get("pubsub")]
    if len(pubsub) != len(reports):
        return {"error": [r.get("error") for r in reports]}
    rate = sum(p["deliver_rate"] for p in pubsub)
    return {"rate": rate, "p50_ms": max(p["latency"]["p50_us"] for p in pubsub) / 1000,
            "p99_ms": max(p["latency"]["p99_us"] for p in pubsub) / 1000,
            "lost": sum(p["exactness"]["lost"] for p in pubsub), "broker_cores": cores,
            "cpu_ms_per_1k": 1000 * cores / rate * 1000 if rate else None}


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--fleetmq", required=True)
    ap.add_argument("--loadtest", required=True)
    ap.add_argument("--pairs", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=10.0, help="msg/s per publisher in the fixed-rate run")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--drain", help="how long the load tool waits for deliveries after publishing stops")
    ap.add_argument("--only", help="run only loads/layouts whose label contains this text")
    ap.add_argument("--out", help="directory for raw results")
    args = ap.parse_args()
    warmup, duration, drain = ("1s", "4s", "3s") if args.quick else ("3s", "15s", "5s")
    drain = args.drain or drain
    secs = float(duration.rstrip("s"))
    out = args.out or tempfile.mkdtemp(prefix="fleetmq-cluster-bench-")
    os.makedirs(out, exist_ok=True)
    print(f"machine: {bench.machine()}\nraw results: {out}", flush=True)
    rows, raw = [], []
    for label, rate in (("full speed", "0"), (f"{args.rate:g} msg/s per publisher", str(args.rate))):
        for layout in ("standalone", "2 fronts + 3 shards"):
            if args.only and args.only not in f"{label} {layout}":
                continue
            work = tempfile.mkdtemp(prefix="fleetmq-cluster-", dir=out)
            if layout == "standalone":
                port = free_port()
                text = (f'[log]\nlevel = "warn"\n[sys]\ninterval_ms = 0\n[limits]\nmax_connections = 100000\n'
                        '[storage]\nengine = "memory"\n'
                        f'[[listener]]\nkind = "tcp"\nbind = "{IP}:{port}"\n')
                procs, ports = [start_node(args.fleetmq, work, "standalone", text)], [port, port]
                bench.wait_port(port, procs[0])
            else:
                procs, ports = start_cluster(args.fleetmq, work)
            time.sleep(1.0)
            per = args.pairs // len(ports)
            load = ["p2p", "--pairs", str(per), "--qos", "1", "--rate", rate, "--inflight", "20", "--payload", "64",
                    "--warmup", warmup, "--duration", duration, "--drain", drain]
            reports, cores, cmds = run(args.loadtest, ports, load, [p.pid for p in procs], secs)
            for p in procs:
                bench.stop(p)
            s = summarize(reports, cores)
            raw.append({"load": label, "layout": layout, "commands": cmds, "summary": s, "reports": reports})
            rows.append((label, layout, s))
            print(f"{label:>28} | {layout:<20} | {json.dumps(s)}", flush=True)
    json.dump(raw, open(os.path.join(out, "results.json"), "w"), indent=1)
    print("\n| load | layout | delivered msg/s | p50 ms | p99 ms | lost | broker cores | broker CPU ms per 1000 msgs |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for label, layout, s in rows:
        if "error" in s:
            print(f"| {label} | {layout} | error: {s['error']} | | | | | |")
            continue
        print(f"| {label} | {layout} | {s['rate']:,.0f} | {s['p50_ms']:.2f} | {s['p99_ms']:.2f} | {s['lost']} | "
              f"{s['broker_cores']:.2f} | {s['cpu_ms_per_1k']:.1f} |")


if __name__ == "__main__":
    main()
