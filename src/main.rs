//! The `smartproxy` command: a thin CLI over the library (see README.md).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use smartproxy::config::Warning;
use smartproxy::{Config, Proxy};
use tokio::signal::unix::{SignalKind, signal};

// mimalloc keeps each size class on its own pages and gives fully free pages back to the
// system: the short-lived allocations of a burst of new connections (ClientHello buffers,
// routing state) do not stay resident behind the long-lived ones, as they do with glibc's
// malloc. Chosen on the `bench/run` figures in docs/BENCHMARKS.md.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const EXIT_INVALID_CONFIG: u8 = 1;
const EXIT_RUNTIME_FAILURE: u8 = 3;

#[derive(Parser)]
#[command(name = "smartproxy", version, about = "Route-based TCP/TLS/HTTP proxy")]
struct Cli {
    /// Log verbosity (RUST_LOG is used when this is not given).
    #[arg(long, global = true, value_enum)]
    log_level: Option<LogLevel>,
    /// Log line format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Pretty)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run until SIGTERM/SIGINT (the embedded default config when no file is given).
    Run {
        /// Config file: .yaml, .yml, .json or .toml.
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Validate a config file: exit 0 if valid, 1 if not.
    Check {
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Pretty,
    Json,
}

fn main() -> ExitCode {
    // clap exits with 2 on usage errors and 0 for --help/--version.
    let cli = Cli::parse();
    init_logging(cli.log_level, cli.log_format);
    match cli.command {
        None => run(None),
        Some(Command::Run { config }) => run(config.as_deref()),
        Some(Command::Check { config }) => check(&config),
    }
}

fn init_logging(level: Option<LogLevel>, format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = match level {
        Some(level) => EnvFilter::new(match level {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    if format == LogFormat::Json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn load(path: &Path) -> Result<Config, ExitCode> {
    match Config::load(path) {
        Ok((config, warnings)) => {
            log_warnings(&warnings);
            Ok(config)
        }
        Err(errors) => {
            // One error per line as `path: message`; whole-file errors (unreadable, syntax)
            // already name the file.
            if errors.0.iter().any(|e| !e.path.is_empty()) {
                eprintln!(
                    "{}: invalid config ({} errors):",
                    path.display(),
                    errors.0.len()
                );
            }
            for error in &errors.0 {
                eprintln!("{error}");
            }
            Err(ExitCode::from(EXIT_INVALID_CONFIG))
        }
    }
}

fn log_warnings(warnings: &[Warning]) {
    for warning in warnings {
        tracing::warn!("{warning}");
    }
}

fn check(path: &Path) -> ExitCode {
    match load(path) {
        Ok(config) => {
            eprintln!(
                "{}: valid ({} route(s))",
                path.display(),
                config.routes.len()
            );
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

fn run(path: Option<&Path>) -> ExitCode {
    let config = match path {
        Some(path) => match load(path) {
            Ok(config) => config,
            Err(code) => return code,
        },
        None => {
            tracing::info!("no config file given: running the embedded default config");
            Config::embedded_default()
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::from(EXIT_RUNTIME_FAILURE);
        }
    };
    let code = runtime.block_on(serve(config));
    // A backend name lookup stuck in the blocking pool must not hold the exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    code
}

async fn serve(config: Config) -> ExitCode {
    let mut signals = match Signals::install() {
        Ok(signals) => signals,
        Err(e) => {
            eprintln!("cannot install signal handlers: {e}");
            return ExitCode::from(EXIT_RUNTIME_FAILURE);
        }
    };
    let proxy = match Proxy::start(config).await {
        Ok(proxy) => proxy,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(EXIT_RUNTIME_FAILURE);
        }
    };
    for addr in proxy.local_addrs() {
        tracing::info!(listener = %addr, "listening");
    }
    if proxy.local_addrs().is_empty() {
        tracing::info!("no routes configured; docs/CONFIG.md shows how to write a first route");
    }
    signals.next_stop(&proxy).await;
    tracing::info!(
        live = proxy.live_connections(),
        "shutting down: listeners closed, draining live connections"
    );
    tokio::select! {
        _ = proxy.shutdown() => {}
        _ = signals.next_stop(&proxy) => {
            tracing::info!(live = proxy.live_connections(), "second signal: closing everything now");
            proxy.shutdown_now().await;
        }
    }
    tracing::info!("stopped");
    ExitCode::SUCCESS
}

struct Signals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }

    /// Waits for SIGTERM or SIGINT. SIGHUP re-reads the certificate files; reloading the rest
    /// of the config is not handled yet, and is only logged.
    async fn next_stop(&mut self, proxy: &Proxy) {
        loop {
            tokio::select! {
                _ = self.terminate.recv() => return,
                _ = self.interrupt.recv() => return,
                _ = self.hangup.recv() => {
                    let replaced = proxy.reload_certificates().await;
                    tracing::info!(replaced, "SIGHUP received: certificate files re-read");
                    tracing::warn!("SIGHUP: reloading routes and options is not supported yet; they stay as started");
                }
            }
        }
    }
}
