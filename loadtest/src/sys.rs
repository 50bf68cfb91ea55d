//! Process probes: this process's CPU time (`getrusage`) and another process's resident memory
//! (`/proc/PID/status` `VmRSS`).
//!
//! Invariants: probes never fail loudly; an unavailable figure is `None` and reported as missing.

use nix::sys::resource::{getrusage, UsageWho};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// User + system CPU time consumed by this process (all threads) so far.
pub fn cpu_time() -> Option<Duration> {
    let u = getrusage(UsageWho::RUSAGE_SELF).ok()?;
    let micros = |t: nix::sys::time::TimeVal| {
        u64::try_from(t.tv_sec()).unwrap_or(0) * 1_000_000 + u64::try_from(t.tv_usec()).unwrap_or(0)
    };
    Some(Duration::from_micros(micros(u.user_time()) + micros(u.system_time())))
}

/// Resident set size of process `pid` in bytes, from `/proc/PID/status`.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_vmrss(&status)
}

fn parse_vmrss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut words = line.split_whitespace().skip(1);
    let n: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") | None => Some(n * 1024),
        Some("mB") => Some(n * 1024 * 1024),
        _ => None,
    }
}

/// CPU use of one process over the load phase.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcessUsage {
    /// OS process id.
    pub pid: u32,
    /// Runtime worker threads.
    pub threads: usize,
    /// CPU seconds (user + system) spent during the load phase.
    pub cpu_secs: f64,
    /// Wall seconds of the load phase.
    pub wall_secs: f64,
}

impl ProcessUsage {
    /// CPU use as a fraction of one core (1.0 = one core busy).
    pub fn cores_used(&self) -> f64 {
        if self.wall_secs > 0.0 {
            self.cpu_secs / self.wall_secs
        } else {
            0.0
        }
    }

    /// True when the process used more than 90% of its worker threads' cores: the tool itself may
    /// have limited the measured throughput.
    pub fn saturated(&self) -> bool {
        self.cores_used() > 0.9 * self.threads.max(1) as f64
    }
}

/// Measures CPU over an interval: create at the start, [`CpuMeter::finish`] at the end.
#[derive(Debug, Clone, Copy)]
pub struct CpuMeter {
    cpu: Option<Duration>,
    wall: std::time::Instant,
    threads: usize,
}

impl CpuMeter {
    /// Starts measuring.
    pub fn start(threads: usize) -> Self {
        CpuMeter { cpu: cpu_time(), wall: std::time::Instant::now(), threads }
    }

    /// Usage since [`CpuMeter::start`].
    pub fn finish(&self) -> ProcessUsage {
        let cpu = match (self.cpu, cpu_time()) {
            (Some(a), Some(b)) => b.saturating_sub(a).as_secs_f64(),
            _ => 0.0,
        };
        ProcessUsage {
            pid: std::process::id(),
            threads: self.threads,
            cpu_secs: cpu,
            wall_secs: self.wall.elapsed().as_secs_f64(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vmrss_parsing() {
        assert_eq!(parse_vmrss("Name:\tx\nVmRSS:\t   1234 kB\nVmSwap: 0 kB\n"), Some(1234 * 1024));
        assert_eq!(parse_vmrss("Name:\tx\n"), None);
        assert_eq!(parse_vmrss("VmRSS: lots kB\n"), None);
    }

    #[test]
    fn own_rss_and_cpu_are_readable() {
        assert!(rss_bytes(std::process::id()).unwrap_or(0) > 0);
        let m = CpuMeter::start(1);
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert!(x != 1);
        let u = m.finish();
        assert!(u.cpu_secs >= 0.0 && u.wall_secs > 0.0);
    }

    #[test]
    fn saturation_threshold_is_per_thread() {
        let u = ProcessUsage { pid: 1, threads: 2, cpu_secs: 1.7, wall_secs: 1.0 };
        assert!(!u.saturated());
        let u = ProcessUsage { threads: 2, cpu_secs: 1.85, ..u };
        assert!(u.saturated());
    }
}
