//! Command-line interface: parse, load settings, run the chosen command.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use crate::settings::Settings;
use crate::startup::{Application, Roles};

mod args;
mod gateway;
mod merchants;
mod ops;

pub use args::{DlqAction, EventsAction};
pub use gateway::GatewayAction;
pub use merchants::MerchantsAction;

/// Relay between Weibo e-commerce order pushes, RabbitMQ and the Weibo order interfaces.
#[derive(Debug, Parser)]
#[command(name = "weibo-relay", version, about)]
pub struct Cli {
    /// TOML configuration file (defaults apply to every key it leaves out).
    #[arg(long, global = true, env = "WEIBO_RELAY_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// What to run.
    #[command(subcommand)]
    pub command: Subcommand,
}

/// The commands of the binary (not to be taken for the worker's fulfilment commands).
#[derive(Debug, clap::Subcommand)]
pub enum Subcommand {
    /// Receiver, fulfilment worker and token keeper in one process.
    Serve,
    /// The push receiver only.
    Receiver,
    /// The fulfilment worker and token keeper only.
    Worker,
    /// Whether this configuration will work: broker nodes, queues as the relay would declare
    /// them, platform hosts, merchants' credentials (no token requested). Exit 0 only if all pass.
    Check,
    /// Inspect or redrive dead-lettered fulfilment commands.
    Dlq {
        /// What to do.
        #[command(subcommand)]
        action: DlqAction,
    },
    /// Replay or watch the event log.
    Events {
        /// What to do.
        #[command(subcommand)]
        action: EventsAction,
    },
    /// Service-provider mode: onboarding links, merchants' status, revoke, rekey.
    Merchants {
        /// What to do.
        #[command(subcommand)]
        action: MerchantsAction,
    },
    /// The platform gateway's clients: `new-key` prints a key and its hash line.
    Gateway {
        /// What to do.
        #[command(subcommand)]
        action: GatewayAction,
    },
    /// Print the e-commerce signature of k=v parameters under KEY.
    Sign {
        /// The sign key.
        key: String,
        /// Parameters as k=v.
        #[arg(value_name = "K=V")]
        params: Vec<String>,
        /// Also print the string that was signed.
        #[arg(long)]
        verbose: bool,
    },
}

/// Commands earlier releases had, now `weibo-relay-tooling`'s.
const MOVED_TO_TOOLING: [&str; 3] = ["demo", "sandbox", "bench"];

/// Runs the process and turns any error into a one-line reason and a non-zero exit.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            // `cargo run --release -- demo` is what earlier READMEs said: say where it went.
            let moved = std::env::args()
                .skip(1)
                .find(|arg| !arg.starts_with('-'))
                .filter(|arg| MOVED_TO_TOOLING.contains(&arg.as_str()));
            if let (clap::error::ErrorKind::InvalidSubcommand, Some(command)) =
                (error.kind(), moved)
            {
                eprintln!(
                    "weibo-relay: `{command}` is a command of weibo-relay-tooling, the demo and \
                     test tools: `bash .ci/demo` (README), or `cargo run --release --bin \
                     weibo-relay-tooling -- {command}`"
                );
                return ExitCode::from(2);
            }
            error.exit()
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("weibo-relay: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Subcommand::Sign {
            key,
            params,
            verbose,
        } => sign(&key, &params, verbose),
        Subcommand::Serve => serve(cli.config, Roles::Serve),
        Subcommand::Receiver => serve(cli.config, Roles::Receiver),
        Subcommand::Worker => serve(cli.config, Roles::Worker),
        Subcommand::Check => ops::check(cli.config),
        Subcommand::Dlq { action } => ops::dlq(cli.config, action),
        Subcommand::Events { action } => ops::events(cli.config, action),
        Subcommand::Merchants { action } => merchants::run(cli.config, action),
        Subcommand::Gateway { action } => gateway::run(action),
    }
}

fn sign(key: &str, params: &[String], verbose: bool) -> anyhow::Result<()> {
    let pairs = params
        .iter()
        .map(|p| {
            p.split_once('=')
                .ok_or_else(|| anyhow::anyhow!("parameter {p:?} is not k=v"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    if verbose {
        println!(
            "{}",
            crate::signature::string_to_sign(pairs.iter().copied(), key)
        );
    }
    println!("{}", crate::signature::sign(pairs.iter().copied(), key));
    Ok(())
}

/// The settings: defaults, then `config` if given, then the environment.
pub fn load(config: Option<PathBuf>) -> anyhow::Result<Settings> {
    Ok(Settings::load(config.as_deref(), std::env::vars())?)
}

fn serve(config: Option<PathBuf>, roles: Roles) -> anyhow::Result<()> {
    let settings = load(config)?;
    let _telemetry = init_telemetry();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let mut stop = stop_signal();
        // A signal during start-up (broker connect, first token) stops the process cleanly.
        let app = tokio::select! {
            app = Application::build(settings, roles) => app?,
            () = &mut stop => return Ok(()),
        };
        let shutdown = app.shutdown_token();
        tokio::spawn(async move {
            stop.await;
            shutdown.cancel();
        });
        app.run_until_stopped().await
    })
}

/// Logging as `WEIBO_RELAY_LOG_FORMAT` asks (JSON or text), for as long as the result lives.
pub fn init_telemetry() -> crate::telemetry::Telemetry {
    let format = std::env::var("WEIBO_RELAY_LOG_FORMAT").ok();
    crate::telemetry::init(crate::telemetry::json_requested(format.as_deref()))
}

/// Registers for SIGINT and SIGTERM at once, so that one arriving before the returned future
/// is first awaited (during start-up, say) is not the default, abrupt death; the future
/// resolves at the first of them.
pub fn stop_signal() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let (Ok(mut interrupt), Ok(mut terminate)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) {
            return Box::pin(async move {
                tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = terminate.recv() => {}
                }
                tracing::info!("signal received");
            });
        }
    }
    Box::pin(async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("signal received");
    })
}
