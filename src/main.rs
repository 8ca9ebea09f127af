//! The `tollgate` command: `run`, `check` and `--version`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tollgate::config::Config;

#[derive(Parser)]
#[command(
    name = "tollgate",
    version,
    about = "A reverse-proxy gateway that enforces OAuth 2.0 / OpenID Connect tokens"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve traffic with the given configuration until SIGTERM or SIGINT.
    Run {
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
    },
    /// Validate a configuration file, list every problem, and exit non-zero if there is one.
    Check {
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Check { config } => match Config::load(&config) {
            Ok(cfg) => {
                let n = cfg.routes.len();
                println!("{}: OK ({n} route{})", config.display(), if n == 1 { "" } else { "s" });
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        },
        Command::Run { config } => run(config),
    }
}

fn run(path: PathBuf) -> ExitCode {
    let config = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    tollgate::logging::init(&config.log);
    let scheme = if config.server.tls.is_some() { "https" } else { "http" };
    let workers = config.server.workers;
    let running = match tollgate::server::start(config) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            eprintln!("tollgate: {e}");
            return ExitCode::FAILURE;
        }
    };
    let egress: Vec<String> = running.egress_addrs.iter().map(|(n, a)| format!("{n}={a}")).collect();
    tracing::info!(
        addr = %running.addr,
        admin_addr = %running.admin_addr,
        egress = egress.join(","),
        scheme,
        workers,
        version = env!("CARGO_PKG_VERSION"),
        "listening"
    );
    match running.run_until_signal() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tollgate: waiting for signals: {e}");
            ExitCode::FAILURE
        }
    }
}
