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
    /// Try tollgate locally: a development issuer, a demo app and the gateway, on loopback.
    Dev {
        /// Where the gateway listens (loopback only).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
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
        Command::Dev { listen } => dev(listen),
    }
}

fn dev(listen: std::net::SocketAddr) -> ExitCode {
    match dev_setup(listen) {
        Ok((rt, setup, file)) => {
            let code = run_loaded(&file, Some((&setup, &file)));
            drop(rt);
            // The configuration was there to copy while tollgate dev ran; its secrets go with it.
            if let Some(dir) = file.parent() {
                let _ = std::fs::remove_dir_all(dir);
            }
            code
        }
        Err(e) => {
            eprintln!("tollgate dev: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Starts the development issuer and demo app (on a runtime of their own) and writes the
/// gateway's configuration to a file the user can copy.
fn dev_setup(
    listen: std::net::SocketAddr,
) -> std::io::Result<(tokio::runtime::Runtime, tollgate::dev::DevSetup, PathBuf)> {
    let listen = if listen.port() == 0 {
        // The public URL needs the port before the gateway starts.
        std::net::TcpListener::bind(listen)?.local_addr()?
    } else {
        listen
    };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let setup = rt.block_on(tollgate::dev::setup(listen))?;
    let dir = std::env::temp_dir().join(format!("tollgate-dev-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("tollgate.toml");
    std::fs::write(&file, &setup.config_text)?;
    Ok((rt, setup, file))
}

fn run(path: PathBuf) -> ExitCode {
    run_loaded(&path, None)
}

fn run_loaded(path: &std::path::Path, dev: Option<(&tollgate::dev::DevSetup, &PathBuf)>) -> ExitCode {
    let config = match Config::load(path) {
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
    if let Some((setup, file)) = dev {
        let gw = &setup.gateway_url;
        println!(
            "\ntollgate dev: a development issuer, two demo apps and the gateway, on this machine only.\n\n  \
             Open         {gw}/wiki/     (sign in with any user name)\n  \
             Second app   {gw}/blog/     (its own client and session; sign out of one, the other stays)\n  \
             Public page  {gw}/public/\n  \
             Issuer       {}\n  \
             Admin        http://{}/metrics  (/readyz, /healthz)\n  \
             Config       {}\n\n\
             Call the API with a client-credentials token:\n{}\n\nStop with Ctrl-C.\n",
            setup.issuer.url,
            running.admin_addr,
            file.display(),
            setup.curl_line()
        );
    }
    match running.run_until_signal() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tollgate: waiting for signals: {e}");
            ExitCode::FAILURE
        }
    }
}
