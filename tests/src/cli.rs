//! Runs `fleetmq` subcommands (certificate and password-file generation) that tests need to
//! prepare a broker's files. Each call is bounded by the subcommand finishing; failures panic with
//! the subcommand's output.

use crate::broker::fleetmq_bin;
use std::path::Path;
use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    let out =
        Command::new(fleetmq_bin()).args(args).output().unwrap_or_else(|e| panic!("cannot run fleetmq {args:?}: {e}"));
    assert!(
        out.status.success(),
        "fleetmq {args:?} failed with {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `fleetmq certs --out DIR --hosts localhost,127.0.0.1 [--client-cn CN]`: writes ca.pem, ca.key,
/// server.pem, server.key, client.pem and client.key into `out`.
pub fn certs(out: &Path, client_cn: Option<&str>) {
    let out_s = out.display().to_string();
    let mut args = vec!["certs", "--out", &out_s, "--hosts", "localhost,127.0.0.1"];
    if let Some(cn) = client_cn {
        args.extend(["--client-cn", cn]);
    }
    run(&args);
}

/// `fleetmq passwd FILE USER --password P`: adds or replaces the user's password hash.
pub fn passwd(file: &Path, user: &str, password: &str) {
    let f = file.display().to_string();
    run(&["passwd", &f, user, "--password", password]);
}

/// Reads a file the broker or a subcommand wrote, as bytes.
pub fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// `fleetmq log <args> --config <broker dir>/fleetmq.toml`: stdout as text.
pub fn log(broker_dir: &Path, args: &[&str]) -> String {
    let config = broker_dir.join("fleetmq.toml").display().to_string();
    let mut all = vec!["log"];
    all.extend_from_slice(args);
    all.extend(["--config", &config]);
    String::from_utf8_lossy(&run(&all).stdout).into_owned()
}
