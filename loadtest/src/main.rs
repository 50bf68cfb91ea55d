//! `fleetmq-loadtest`: parses the command line, runs the scenario in-process or as worker
//! processes, shows live progress on a terminal, and prints the summary table or JSON.
//!
//! Invariants: every failure is one `error: …` line on stderr with a non-zero exit status (see the
//! help text for the codes); Ctrl-C stops the load and still prints the summary so far.
#![forbid(unsafe_code)]

mod args;

use anyhow::Context;
use args::{Cli, Command};
use clap::Parser;
use fleetmq_loadtest::report::{self, plot, table};
use fleetmq_loadtest::run::{local, Control, Live, RawResult};
use fleetmq_loadtest::scenario::spec::{Origin, Spec};
use fleetmq_loadtest::scenario::{Scenario, Workload};
use fleetmq_loadtest::stats::Verdict;
use fleetmq_loadtest::worker;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

const EXIT_ERROR: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_FAIL: u8 = 3;
const EXIT_INTERRUPTED: u8 = 130;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, Command::Worker) {
        return worker_main();
    }
    let scn = match scenario(&cli) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if let Some(p) = &cli.out.plot {
        if p.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() != Some("svg") {
            eprintln!(
                "error: --plot {}: only .svg output is supported (convert it to PNG with e.g. rsvg-convert)",
                p.display()
            );
            return ExitCode::from(EXIT_USAGE);
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(scn.threads).enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    match runtime.block_on(drive(&cli, &scn)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

fn scenario(cli: &Cli) -> anyhow::Result<Scenario> {
    let (spec, origin) = match &cli.command {
        Command::Run { file } => {
            let mut spec = Spec::load(file)?;
            spec.connection.overlay(cli.conn.spec());
            spec.processes = cli.conn.processes.or(spec.processes);
            spec.threads = cli.conn.threads.or(spec.threads);
            spec.run_id = cli.conn.run_id.clone().or(spec.run_id);
            (spec, Origin::File)
        }
        cmd => {
            let w = args::workload(cmd).context("no scenario given")?;
            (args::cli_spec(cli, w), Origin::Cli)
        }
    };
    Ok(spec.resolve(origin)?)
}

async fn drive(cli: &Cli, scn: &Scenario) -> anyhow::Result<ExitCode> {
    let control = Control::default();
    let live = Arc::new(Live::default());
    let stop = control.stop.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            stop.cancel();
        }
    });
    let show = !cli.out.no_progress && std::io::stdout().is_terminal() && std::io::stderr().is_terminal();
    let bar = show.then(|| spawn_progress(scn.clone(), live.clone()));
    let result: anyhow::Result<RawResult> = if scn.processes > 1 {
        let exe = std::env::current_exe().context("cannot locate this executable for --processes")?;
        worker::run_processes(&exe, scn, control.clone(), live.clone()).await.map_err(Into::into)
    } else {
        local::run_local(scn, control.clone(), live.clone()).await.map_err(Into::into)
    };
    if let Some((bar, task)) = bar {
        task.abort();
        bar.finish_and_clear();
    }
    let raw = match result {
        Ok(r) => r,
        Err(e) if control.stop.is_cancelled() => {
            eprintln!("error: {e:#}");
            return Ok(ExitCode::from(EXIT_INTERRUPTED));
        }
        Err(e) => return Err(e),
    };
    let rep = report::build(scn, &raw)?;
    for w in &rep.warnings {
        eprintln!("WARNING: {w}");
    }
    if cli.out.json {
        println!("{}", serde_json::to_string(&rep)?);
    } else {
        print!("{}", table::render(&rep));
    }
    if let Some(path) = &cli.out.plot {
        plot::write(path, &rep, &raw)?;
        if !cli.out.json {
            println!("{:<12} {}", "plot", path.display());
        }
    }
    Ok(ExitCode::from(match rep.verdict {
        _ if raw.interrupted => EXIT_INTERRUPTED,
        Verdict::Pass => 0,
        Verdict::Fail(_) | Verdict::Incomplete(_) => EXIT_FAIL,
    }))
}

fn spawn_progress(scn: Scenario, live: Arc<Live>) -> (ProgressBar, tokio::task::JoinHandle<()>) {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    let b = bar.clone();
    let task = tokio::spawn(async move {
        let mut last = (std::time::Instant::now(), 0u64);
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let s = live.snapshot();
            let t0 = live.t0_ns.load(Ordering::Relaxed);
            let now = fleetmq_loadtest::payload::now_ns();
            let since = if t0 == 0 { None } else { Some(now.saturating_sub(t0) as f64 / 1e9) };
            let msg = match (&scn.workload, since) {
                (_, None) => "connecting clients…".to_string(),
                (Workload::PubSub(l), Some(t)) => {
                    let (w, d) = (l.warmup.as_secs_f64(), l.duration.as_secs_f64());
                    let phase = if t < w {
                        "warm-up"
                    } else if t < w + d {
                        "measuring"
                    } else {
                        "draining"
                    };
                    let elapsed = last.0.elapsed().as_secs_f64().max(1e-3);
                    let rate = (s.delivered.saturating_sub(last.1)) as f64 / elapsed;
                    last = (std::time::Instant::now(), s.delivered);
                    format!(
                        "{phase} {t:.1}/{:.1}s  sent {}  completed {}  delivered {} ({rate:.0}/s)  errors {}",
                        w + d,
                        s.sent,
                        s.completed,
                        s.delivered,
                        s.errors
                    )
                }
                (Workload::Connect(l), Some(t)) => {
                    format!(
                        "{t:.1}s  connected {}/{}  failed {}  errors {}",
                        s.connected, l.connections, s.failed, s.errors
                    )
                }
            };
            b.set_message(msg);
            b.tick();
        }
    });
    (bar, task)
}

fn worker_main() -> ExitCode {
    let mut line = String::new();
    if std::io::stdin().read_line(&mut line).is_err() {
        return ExitCode::from(EXIT_ERROR);
    }
    let spec = match worker::parse_spec(&line) {
        Ok(s) => s,
        Err(e) => {
            worker::emit(&worker::ToParent::Error { message: e.to_string() });
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let runtime =
        match tokio::runtime::Builder::new_multi_thread().worker_threads(spec.scenario.threads).enable_all().build() {
            Ok(r) => r,
            Err(e) => {
                eprintln!("error: cannot start the runtime: {e}");
                return ExitCode::from(EXIT_ERROR);
            }
        };
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        let mut buf = String::new();
        loop {
            buf.clear();
            match std::io::stdin().read_line(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if let Ok(cmd) = serde_json::from_str::<worker::ToWorker>(buf.trim()) {
                        if tx.send(cmd).is_err() {
                            break;
                        }
                    }
                }
            }
        }
    });
    if runtime.block_on(worker::serve(spec, rx)) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_ERROR)
    }
}
