//! A real HAProxy (Debian's package, installed by `.ci/run`) for load-balancer tests: started on a
//! config the test writes, killed when the test ends.

use std::path::Path;
use std::process::{Child, Command};

/// A running HAProxy; killed and reaped on drop.
pub struct Haproxy(Child);

impl Haproxy {
    /// Starts HAProxy in the foreground on `config` (written to `dir/haproxy.cfg`, log in
    /// `dir/haproxy.log`).
    pub fn start(dir: &Path, config: &str) -> Haproxy {
        let cfg = dir.join("haproxy.cfg");
        std::fs::write(&cfg, config).unwrap_or_else(|e| panic!("cannot write {}: {e}", cfg.display()));
        let bin = if Path::new("/usr/sbin/haproxy").exists() { "/usr/sbin/haproxy" } else { "haproxy" };
        let log = std::fs::File::create(dir.join("haproxy.log")).unwrap_or_else(|e| panic!("haproxy.log: {e}"));
        let child = Command::new(bin)
            .args(["-db", "-f"])
            .arg(&cfg)
            .stdout(log.try_clone().unwrap_or_else(|e| panic!("haproxy.log: {e}")))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin} (installed by .ci/run): {e}"));
        Haproxy(child)
    }

    /// The `global` and `defaults` sections every test config starts with (TCP mode).
    pub fn preamble() -> &'static str {
        "global\n    maxconn 200\ndefaults\n    mode tcp\n    timeout connect 5s\n    timeout client 60s\n    \
         timeout server 60s\n"
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
