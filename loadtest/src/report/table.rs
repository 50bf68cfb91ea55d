//! The human-readable summary printed at the end of a run.
//!
//! Invariants: one labelled line per figure group, fixed label width, units on every number;
//! the last line is always `verdict  PASS|FAIL|INCOMPLETE …`.

use super::{ConnectReport, PubSubReport, Report};
use crate::scenario::Workload;
use crate::stats::latency::Summary;
use crate::stats::Verdict;
use std::collections::BTreeMap;
use std::fmt::Write;

/// Formats microseconds with a unit that keeps 3 significant digits.
pub fn fmt_us(us: u64) -> String {
    match us {
        0..=999 => format!("{us} µs"),
        1_000..=999_999 => format!("{:.2} ms", us as f64 / 1e3),
        _ => format!("{:.2} s", us as f64 / 1e6),
    }
}

/// Formats a byte count in binary units.
pub fn fmt_bytes(b: f64) -> String {
    let a = b.abs();
    if a >= 1024.0 * 1024.0 * 1024.0 {
        format!("{:.2} GiB", b / (1024.0 * 1024.0 * 1024.0))
    } else if a >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", b / (1024.0 * 1024.0))
    } else if a >= 1024.0 {
        format!("{:.1} KiB", b / 1024.0)
    } else {
        format!("{b:.0} B")
    }
}

fn latency_line(s: &Summary) -> String {
    if s.count == 0 {
        return "no samples".to_string();
    }
    format!(
        "p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  ({} samples)",
        fmt_us(s.p50_us),
        fmt_us(s.p90_us),
        fmt_us(s.p99_us),
        fmt_us(s.p999_us),
        fmt_us(s.max_us),
        s.count
    )
}

fn counts_line(m: &BTreeMap<String, u64>) -> String {
    if m.is_empty() {
        return "none".to_string();
    }
    m.iter().map(|(k, v)| format!("{v} × {k}")).collect::<Vec<_>>().join("; ")
}

fn row(out: &mut String, label: &str, value: impl AsRef<str>) {
    let _ = writeln!(out, "{label:<12} {}", value.as_ref());
}

/// Renders the whole summary.
pub fn render(r: &Report) -> String {
    let mut out = String::new();
    let s = &r.scenario;
    let c = &s.connection;
    let tls = if c.tls { " tls" } else { "" };
    row(
        &mut out,
        "scenario",
        format!(
            "{} ({})  run {}  mqtt {}  {}:{}{tls}",
            s.name,
            s.workload.kind_name(),
            s.run_id,
            c.mqtt.name(),
            c.host,
            c.port
        ),
    );
    match &s.workload {
        Workload::PubSub(l) => {
            let rate = if l.rate > 0.0 { format!("{} msg/s per publisher", l.rate) } else { "max speed".into() };
            row(
                &mut out,
                "load",
                format!(
                    "{} publishers → {} subscribers  qos {}  payload {} B  {rate}  {} sessions  inflight {}",
                    l.publishers,
                    l.subscribers,
                    l.qos,
                    l.payload,
                    if l.clean { "clean" } else { "persistent" },
                    l.inflight
                ),
            );
            row(
                &mut out,
                "timing",
                format!(
                    "{:.1} s measured after {:.1} s warm-up, drain ≤ {:.1} s",
                    l.duration.as_secs_f64(),
                    l.warmup.as_secs_f64(),
                    l.drain.as_secs_f64()
                ),
            );
        }
        Workload::Connect(l) => {
            let rate = if l.rate > 0.0 { format!("{} conn/s", l.rate) } else { "max speed".into() };
            row(
                &mut out,
                "load",
                format!("{} connections at {rate}, held {:.1} s", l.connections, l.duration.as_secs_f64()),
            );
        }
    }
    row(&mut out, "processes", format!("{} × {} threads", s.processes, s.threads));
    if let Some(p) = &r.pubsub {
        pubsub_rows(&mut out, p);
    }
    if let Some(cr) = &r.connect {
        connect_rows(&mut out, cr);
    }
    row(&mut out, "errors", counts_line(&r.errors));
    let cpu: Vec<String> = r
        .processes
        .iter()
        .map(|p| format!("pid {} {:.0}% of a core ({} threads)", p.pid, p.cores_used() * 100.0, p.threads))
        .collect();
    row(&mut out, "tool cpu", cpu.join("; "));
    for w in &r.warnings {
        row(&mut out, "WARNING", w);
    }
    let verdict = match &r.verdict {
        Verdict::Pass => "PASS".to_string(),
        Verdict::Fail(why) => format!("FAIL: {why}"),
        Verdict::Incomplete(why) => format!("INCOMPLETE: {why}"),
    };
    row(&mut out, "verdict", verdict);
    out
}

fn pubsub_rows(out: &mut String, p: &PubSubReport) {
    let ack = if p.qos == 0 { "written" } else { "acked" };
    row(out, "publish", format!("{:.1} msg/s {ack} (target {})", p.publish_rate, target(p.target_rate)));
    row(out, "deliver", format!("{:.1} msg/s received", p.deliver_rate));
    row(
        out,
        "messages",
        format!(
            "sent {}  {ack} {}  rejected {}  received {} of {} expected ({} receptions)",
            p.sent, p.completed, p.rejected, p.exactness.received, p.exactness.expected, p.delivered
        ),
    );
    let e = &p.exactness;
    row(
        out,
        "exactness",
        format!(
            "qos {}: lost {}  duplicated {}  out-of-order {}  unexpected {}",
            p.qos, e.lost, e.duplicates, e.out_of_order, e.unexpected
        ),
    );
    row(out, "latency", latency_line(&p.latency));
    if p.qos > 0 {
        row(out, "ack latency", latency_line(&p.ack_latency));
    }
}

fn target(rate: f64) -> String {
    if rate > 0.0 {
        format!("{rate:.1} msg/s")
    } else {
        "max".to_string()
    }
}

fn connect_rows(out: &mut String, c: &ConnectReport) {
    row(
        out,
        "connections",
        format!("{} of {} connected, {} failed, {} held at the end", c.connected, c.attempted, c.failed, c.held),
    );
    row(out, "connect rate", format!("{:.1} conn/s over {:.2} s", c.connect_rate, c.ramp_secs));
    row(out, "latency", latency_line(&c.latency));
    row(out, "failures", counts_line(&c.failures));
    row(out, "dropped", counts_line(&c.dropped));
    if let (Some(b), Some(a)) = (c.broker_rss_before, c.broker_rss_after) {
        let per =
            c.broker_bytes_per_connection.map(|x| format!(", {} per connection", fmt_bytes(x))).unwrap_or_default();
        row(out, "broker rss", format!("{} → {}{per}", fmt_bytes(b as f64), fmt_bytes(a as f64)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(fmt_us(850), "850 µs");
        assert_eq!(fmt_us(1_234), "1.23 ms");
        assert_eq!(fmt_us(2_500_000), "2.50 s");
        assert_eq!(fmt_bytes(512.0), "512 B");
        assert_eq!(fmt_bytes(3.0 * 1024.0 * 1024.0), "3.0 MiB");
        assert_eq!(fmt_bytes(-2048.0), "-2.0 KiB");
    }
}
