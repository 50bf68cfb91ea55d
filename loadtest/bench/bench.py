#!/usr/bin/env python3
"""FleetMQ vs Mosquitto vs a raw TCP relay: the comparison benchmark driven by loadtest/bench.sh.

For each scenario it starts a fresh broker process (FleetMQ, then Mosquitto, then the relay where
the scenario is one the relay can carry), runs fleetmq-loadtest against it with --json, samples the
broker's CPU ticks and VmRSS from /proc every 0.25 s, stops the broker, and finally prints one
Markdown table plus the target checks. Raw results go to --out (one JSON per run, results.json,
table.md). Standard library only.
"""
import argparse
import json
import os
import platform
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

PORTS = {"fleetmq": 21883, "mosquitto": 21884, "relay": 21885}
TICK = os.sysconf("SC_CLK_TCK")
SAMPLE = 0.25


def scenarios(quick):
    """(name, targets, load-tool args) in run order; durations shrink with --quick."""
    w, d, dr = ("1s", "4s", "3s") if quick else ("3s", "15s", "5s")
    n_idle, hold = (2000, "3s") if quick else (10000, "10s")
    pairs = 200 if quick else 1000
    subs = 200 if quick else 1000
    timing = ["--warmup", w, "--duration", d, "--drain", dr, "--payload", "64"]
    return [
        ("QoS 0 fan-in (100 → 1)", ["fleetmq", "mosquitto", "relay"],
         ["fan-in", "--publishers", "100", "--subscribers", "1", "--qos", "0", "--rate", "0"] + timing),
        (f"QoS 1 p2p ({pairs} pairs)", ["fleetmq", "mosquitto"],
         ["p2p", "--pairs", str(pairs), "--qos", "1", "--rate", "0", "--inflight", "20"] + timing),
        (f"QoS 1 fan-out (1 → {subs})", ["fleetmq", "mosquitto"],
         ["fan-out", "--publishers", "1", "--subscribers", str(subs), "--qos", "1", "--rate", "0",
          "--inflight", "100"] + timing),
        (f"QoS 2 p2p ({pairs} pairs)", ["fleetmq", "mosquitto"],
         ["p2p", "--pairs", str(pairs), "--qos", "2", "--rate", "0", "--inflight", "20"] + timing),
        (f"{n_idle} idle connections", ["fleetmq", "mosquitto"],
         ["connect", "--connections", str(n_idle), "--rate", "2000", "--duration", hold,
          "--processes", "2", "--source-addrs", "127.0.0.1,127.0.0.2"]),
        # Placeholder rate: replaced by 80 % of Mosquitto's measured QoS 1 p2p rate.
        (f"QoS 1 p2p ({pairs} pairs) at 80% of Mosquitto max", ["fleetmq", "mosquitto"],
         ["p2p", "--pairs", str(pairs), "--qos", "1", "--rate", "RATE", "--inflight", "20"] + timing),
    ]


def window_secs(args):
    """Warm-up + measurement (or hold) seconds of a load-tool argument list."""
    total = 0.0
    for key in ("--warmup", "--duration"):
        if key in args:
            total += float(args[args.index(key) + 1].rstrip("s"))
    return total


def read_proc(pid):
    """(cpu ticks, rss bytes) of pid, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])
        rss = 0
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) * 1024
        return ticks, rss
    except (OSError, IndexError, ValueError):
        return None


def machine_busy():
    """User + nice + system jiffies of the whole machine (all cores), from /proc/stat. Interrupt
    and softirq time are left out: loopback traffic of the run itself is accounted there."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return v[0] + v[1] + v[2]


class Sampler(threading.Thread):
    """Samples a process's CPU ticks and RSS every SAMPLE seconds until stopped."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.samples, self.stop = pid, [], threading.Event()

    def run(self):
        while not self.stop.is_set():
            s = read_proc(self.pid)
            if s:
                self.samples.append((time.monotonic(), s[0], s[1]))
            self.stop.wait(SAMPLE)

    def busiest(self, secs):
        """Mean cores used over the busiest `secs`-long stretch of samples (the load window)."""
        s = self.samples
        if len(s) < 2:
            return 0.0
        best, j = 0.0, 0
        for i in range(len(s)):
            while j + 1 < len(s) and s[j + 1][0] - s[i][0] <= secs:
                j += 1
            if s[j][0] > s[i][0]:
                best = max(best, (s[j][1] - s[i][1]) / TICK / (s[j][0] - s[i][0]))
            if j + 1 >= len(s):
                break
        return best

    def peak_rss(self):
        return max((x[2] for x in self.samples), default=0)


def wait_port(port, proc, timeout=20.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"broker exited with {proc.returncode} before listening on {port}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def start(target, cfg, workdir):
    """Starts a fresh broker process for `target` and waits for its port."""
    port = PORTS[target]
    if target == "fleetmq":
        text = open(cfg.fleetmq_conf).read().replace("127.0.0.1:21883", f"127.0.0.1:{port}")
        conf = os.path.join(workdir, "fleetmq.toml")
        open(conf, "w").write(text)
        cmd = [cfg.fleetmq, "--config", conf]
    elif target == "mosquitto":
        text = open(cfg.mosquitto_conf).read().replace("listener 21884", f"listener {port}")
        conf = os.path.join(workdir, "mosquitto.conf")
        open(conf, "w").write(text)
        cmd = [cfg.mosquitto, "-c", conf]
    else:
        cmd = [cfg.relay, "--bind", f"127.0.0.1:{port}"]
    log = open(os.path.join(workdir, f"{target}.log"), "ab")
    proc = subprocess.Popen(cmd, cwd=workdir, stdout=log, stderr=log)
    wait_port(port, proc)
    return proc


def stop(proc):
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run_one(cfg, name, target, args, workdir, side=None):
    """One load-tool run against a fresh `target`; returns a result dict. `side`, if given, is a
    command started next to the load tool (a Kafka consumer, say); the JSON object on the last line
    it prints goes in `res["side"]`."""
    proc = start(target, cfg, workdir)
    time.sleep(0.5)
    side_proc = subprocess.Popen(side, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) if side else None
    args = [a if a != "PID" else str(proc.pid) for a in args]
    if args[0] == "connect":
        args = args + ["--broker-pid", str(proc.pid)]
    cmd = [cfg.loadtest, "--port", str(PORTS[target]), "--no-progress", "--json"] + args
    sampler = Sampler(proc.pid)
    sampler.start()
    before = (time.monotonic(), machine_busy(), resource.getrusage(resource.RUSAGE_CHILDREN))
    load0 = os.getloadavg()
    started = time.monotonic()
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=window_secs(args) + 180)
        rc, stdout, stderr = out.returncode, out.stdout, out.stderr
    except subprocess.TimeoutExpired as e:
        rc, stdout, stderr = -1, "", f"timed out: {e}"
    wall = time.monotonic() - started
    side_out = None
    if side_proc:
        try:
            side_stdout, side_stderr = side_proc.communicate(timeout=60)
            lines = side_stdout.strip().splitlines()
            side_out = json.loads(lines[-1]) if lines else {"error": side_stderr.strip()[-300:]}
        except (subprocess.TimeoutExpired, json.JSONDecodeError) as e:
            side_proc.kill()
            side_out = {"error": str(e)}
    sampler.stop.set()
    sampler.join()
    after = (time.monotonic(), machine_busy(), resource.getrusage(resource.RUSAGE_CHILDREN))
    broker_ticks = (sampler.samples[-1][1] - sampler.samples[0][1]) if sampler.samples else 0
    stop(proc)
    tool_cpu = (after[2].ru_utime + after[2].ru_stime) - (before[2].ru_utime + before[2].ru_stime)
    other = (after[1] - before[1]) / TICK - broker_ticks / TICK - tool_cpu
    res = {"scenario": name, "target": target, "command": " ".join(cmd), "exit": rc, "wall_secs": wall,
           "loadavg_before": load0, "broker_cores": sampler.busiest(window_secs(args) or wall),
           "broker_cpu_secs": broker_ticks / TICK, "broker_peak_rss": sampler.peak_rss(),
           "tool_cpu_secs": tool_cpu, "other_cores": max(other, 0.0) / max(after[0] - before[0], 1e-3),
           "side": side_out}
    try:
        res["report"] = json.loads(stdout.strip().splitlines()[-1]) if stdout.strip() else None
    except json.JSONDecodeError:
        res["report"] = None
    if res["report"] is None:
        res["error"] = (stderr.strip().splitlines() or ["no output"])[-1]
    return res


def figures(res):
    """Table figures of one run."""
    rep = res.get("report") or {}
    ps, cn = rep.get("pubsub"), rep.get("connect")
    f = {"rate": None, "p50": None, "p99": None, "lost": None, "per_conn": None, "verdict": rep.get("verdict")}
    if ps:
        f.update(rate=ps["deliver_rate"], p50=ps["latency"]["p50_us"] / 1000, p99=ps["latency"]["p99_us"] / 1000,
                 lost=ps["exactness"]["lost"])
    if cn:
        f.update(per_conn=cn.get("broker_bytes_per_connection"), held=cn.get("held"))
    return f


def fmt(v, spec):
    return "–" if v is None else format(v, spec)


def ratio(a, b):
    return None if a is None or not b else a / b


def table(results):
    head = ("| scenario | broker | delivered msg/s | p50 ms | p99 ms | lost | bytes/conn | peak RSS MiB "
            "| CPU cores | other procs cores | FleetMQ/Mosquitto | FleetMQ/relay |")
    lines = [head, "|" + "---|" * 12]
    by = {(r["scenario"], r["target"]): r for r in results}
    for r in results:
        f = figures(r)
        ratios = ["", ""]
        if r["target"] == "fleetmq":
            for i, other in enumerate(("mosquitto", "relay")):
                o = by.get((r["scenario"], other))
                if o:
                    g = figures(o)
                    key = "per_conn" if f["per_conn"] is not None else ("p99" if "80%" in r["scenario"] else "rate")
                    ratios[i] = fmt(ratio(f[key], g[key]), ".2f") + ("" if key == "rate" else f" ({key})")
        note = "" if r.get("report") else f" ERROR: {r.get('error')}"
        lines.append(
            f"| {r['scenario']} | {r['target']}{note} | {fmt(f['rate'], ',.0f')} | {fmt(f['p50'], '.2f')} "
            f"| {fmt(f['p99'], '.2f')} | {fmt(f['lost'], ',')} | {fmt(f['per_conn'], ',.0f')} "
            f"| {r['broker_peak_rss'] / 2**20:.1f} | {r['broker_cores']:.2f} | {r['other_cores']:.2f} | {ratios[0]} | {ratios[1]} |")
    return "\n".join(lines)


def targets(results):
    by = {(r["scenario"], r["target"]): figures(r) for r in results}
    names = list(dict.fromkeys(r["scenario"] for r in results))
    out = []

    def check(label, value, goal, ok):
        out.append(f"- {label}: {fmt(value, '.2f')} (target {goal}) → {'met' if ok else 'NOT met'}")

    for n in names:
        fq, mq, rl = by.get((n, "fleetmq")), by.get((n, "mosquitto")), by.get((n, "relay"))
        if not fq or not mq:
            continue
        if "80%" in n:
            v = ratio(fq["p99"], mq["p99"])
            check(f"{n}: p99 FleetMQ/Mosquitto", v, "≤ 0.5", v is not None and v <= 0.5)
        elif fq["per_conn"] is not None:
            v = ratio(fq["per_conn"], mq["per_conn"])
            check(f"{n}: bytes per connection FleetMQ/Mosquitto", v, "≤ 1.0", v is not None and v <= 1.0)
        elif "QoS 2" not in n:
            v = ratio(fq["rate"], mq["rate"])
            check(f"{n}: delivered msg/s FleetMQ/Mosquitto", v, "≥ 2.0", v is not None and v >= 2.0)
        if rl:
            v = ratio(fq["rate"], rl["rate"])
            check(f"{n}: delivered msg/s FleetMQ/relay", v, "≥ 0.5", v is not None and v >= 0.5)
    return "\n".join(out)


def busy_cores(secs=2.0):
    """Cores the rest of the machine keeps busy, measured over `secs` (nothing of ours runs then)."""
    b0, t0 = machine_busy(), time.monotonic()
    time.sleep(secs)
    return (machine_busy() - b0) / TICK / (time.monotonic() - t0)


def wait_idle(limit, max_wait):
    """Waits (up to max_wait s) until other processes use less than `limit` cores; returns their use."""
    end = time.monotonic() + max_wait
    busy = busy_cores()
    while busy > limit and time.monotonic() < end:
        print(f"machine busy ({busy:.2f} cores used by other processes > {limit}); waiting…", file=sys.stderr,
              flush=True)
        time.sleep(10)
        busy = busy_cores()
    return busy


def machine():
    model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    mem = next((l.split()[1] for l in open("/proc/meminfo") if l.startswith("MemTotal")), "0")
    osr = dict(l.strip().split("=", 1) for l in open("/etc/os-release") if "=" in l)
    return (f"{os.cpu_count()} cores ({model}), {int(mem) // 1024 // 1024} GiB RAM, "
            f"{osr.get('PRETTY_NAME', '?').strip(chr(34))}, Linux {platform.release()}")


def write_table(out, text):
    """Prints the result table and keeps it as OUT/table.md."""
    print("\n" + text)
    with open(os.path.join(out, "table.md"), "w") as fh:
        fh.write(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="short smoke run (~2 minutes)")
    ap.add_argument("--out", help="directory for raw results [default: a new temporary directory]")
    ap.add_argument("--max-busy", type=float, default=0.2,
                    help="wait while other processes use more than this many cores [default: 0.2]")
    ap.add_argument("--max-wait", type=float, default=600, help="longest wait for an idle machine, seconds")
    ap.add_argument("--max-wait-run", type=float, default=300, help="longest wait before each run, seconds")
    ap.add_argument("--max-busy-run", type=float, default=0.3,
                    help="repeat a run during which other processes used more cores than this [default: 0.3]")
    ap.add_argument("--retries", type=int, default=2, help="repeats of a disturbed run [default: 2]")
    ap.add_argument("--only", help="run only scenarios whose name contains this text")
    for b in ("fleetmq", "loadtest", "relay", "mosquitto", "fleetmq_conf", "mosquitto_conf"):
        ap.add_argument(f"--{b.replace('_', '-')}", required=True)
    cfg = ap.parse_args()
    out = cfg.out or tempfile.mkdtemp(prefix="fleetmq-bench-")
    os.makedirs(out, exist_ok=True)
    workdir = tempfile.mkdtemp(prefix="fleetmq-bench-run-")
    mosq_version = subprocess.run([cfg.mosquitto, "-h"], capture_output=True, text=True).stdout.splitlines()[:1]
    print(f"machine: {machine()}\nmosquitto: {' '.join(mosq_version)}\nopen files: "
          f"{resource.getrlimit(resource.RLIMIT_NOFILE)[0]}\nraw results: {out}", flush=True)
    load_start = os.getloadavg()
    wait_idle(cfg.max_busy, cfg.max_wait)
    results = []
    mosq_p2p_rate = None
    for name, tgts, args in scenarios(cfg.quick):
        if cfg.only and cfg.only not in name:
            continue
        for target in tgts:
            a = list(args)
            if "RATE" in a:
                pairs = int(a[a.index("--pairs") + 1])
                rate = 0.8 * (mosq_p2p_rate or 0) / pairs
                if rate <= 0:
                    break
                a[a.index("RATE")] = f"{rate:.2f}"
            for attempt in range(cfg.retries + 1):
                idle = wait_idle(cfg.max_busy, cfg.max_wait_run)
                print(f"== {name} :: {target}", flush=True)
                r = run_one(cfg, name, target, a, workdir)
                r["others_before_cores"], r["attempt"] = idle, attempt + 1
                if r["other_cores"] <= cfg.max_busy_run or attempt == cfg.retries:
                    break
                print(f"   other processes used {r['other_cores']:.2f} cores during the run; repeating it",
                      flush=True)
            f = figures(r)
            print(f"   delivered/s {fmt(f['rate'], ',.0f')}  p50 {fmt(f['p50'], '.2f')} ms  p99 {fmt(f['p99'], '.2f')} ms"
                  f"  lost {fmt(f['lost'], ',')}  bytes/conn {fmt(f['per_conn'], ',.0f')}  broker {r['broker_cores']:.2f}"
                  f" cores, peak RSS {r['broker_peak_rss'] / 2**20:.1f} MiB  tool {r['tool_cpu_secs']:.1f} cpu-s"
                  f"  others {r['other_cores']:.2f} cores  {f['verdict'] or r.get('error')}", flush=True)
            results.append(r)
            slug = "".join(c if c.isalnum() else "-" for c in f"{name}-{target}").strip("-")
            with open(os.path.join(out, f"{slug}.json"), "w") as fh:
                json.dump(r, fh, indent=1)
            if target == "mosquitto" and name.startswith("QoS 1 p2p") and "80%" not in name:
                mosq_p2p_rate = f["rate"]
    load_end = os.getloadavg()
    text = (f"{table(results)}\n\nTargets:\n{targets(results)}\n\n"
            f"load average before: {' '.join(f'{x:.2f}' for x in load_start)}; "
            f"after: {' '.join(f'{x:.2f}' for x in load_end)}\n")
    write_table(out, text)
    with open(os.path.join(out, "results.json"), "w") as fh:
        json.dump(results, fh, indent=1)
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
