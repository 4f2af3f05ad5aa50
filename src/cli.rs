//! Command-line interface: parse, load settings, run the chosen command.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Settings;
use crate::startup::{Application, Roles};

/// Relay between Weibo e-commerce order pushes, RabbitMQ and the Weibo order interfaces.
#[derive(Debug, Parser)]
#[command(name = "weibo-relay", version, about)]
pub struct Cli {
    /// TOML configuration file (defaults apply to every key it leaves out).
    #[arg(long, global = true, env = "WEIBO_RELAY_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Every role in one process (today: the push receiver).
    Serve,
    /// The push receiver only.
    Receiver,
    /// A simulated Weibo platform on loopback (merchants from the configuration).
    Sandbox(SandboxArgs),
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

/// `weibo-relay sandbox` options; faults can be changed later through `/admin/faults`.
#[derive(Debug, clap::Args)]
pub struct SandboxArgs {
    /// Listen address.
    #[arg(long, default_value = "127.0.0.1:9090", value_name = "ADDR")]
    pub bind: std::net::SocketAddr,
    /// Life of an issued access_token, in seconds.
    #[arg(long, default_value_t = 7200, value_name = "SECS")]
    pub token_ttl: u64,
    /// Latency added to every platform call, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Probability (0 to 1) that an order call answers HTTP 503.
    #[arg(long, default_value_t = 0.0)]
    pub error_rate: f64,
    /// Order calls per second beyond which calls answer 10023.
    #[arg(long)]
    pub rate_limit_per_sec: Option<u32>,
}

/// Runs the process and turns any error into a one-line reason and a non-zero exit.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
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
        Command::Sign {
            key,
            params,
            verbose,
        } => sign(&key, &params, verbose),
        Command::Serve => serve(cli.config, Roles::Serve),
        Command::Receiver => serve(cli.config, Roles::Receiver),
        Command::Sandbox(args) => sandbox(cli.config, args),
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

fn load(config: Option<PathBuf>) -> anyhow::Result<Settings> {
    Ok(Settings::load(config.as_deref(), std::env::vars())?)
}

fn serve(config: Option<PathBuf>, roles: Roles) -> anyhow::Result<()> {
    let settings = load(config)?;
    init_telemetry();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let app = Application::build(settings, roles).await?;
        let shutdown = app.shutdown_token();
        tokio::spawn(async move {
            wait_for_signal().await;
            shutdown.cancel();
        });
        app.run_until_stopped().await
    })
}

fn sandbox(config: Option<PathBuf>, args: SandboxArgs) -> anyhow::Result<()> {
    use crate::sandbox::{Faults, Sandbox, SandboxConfig};
    let settings = load(config)?;
    if settings.merchants.is_empty() {
        anyhow::bail!("the sandbox needs at least one [[merchants]] entry in the configuration");
    }
    init_telemetry();
    let mut sandbox_config = SandboxConfig::new(settings.merchants);
    sandbox_config.bind = args.bind;
    sandbox_config.token_ttl = std::time::Duration::from_secs(args.token_ttl);
    sandbox_config.faults = Faults {
        latency_ms: args.latency_ms,
        error_rate: args.error_rate,
        rate_limit_per_sec: args.rate_limit_per_sec,
        ..Faults::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let handle = Sandbox::start(sandbox_config)?;
        println!("oauth_base = \"{}\"", handle.base_url());
        println!("api_base = \"{}\"", handle.api_base());
        wait_for_signal().await;
        handle.stop().await;
        Ok(())
    })
}

fn init_telemetry() {
    let format = std::env::var("WEIBO_RELAY_LOG_FORMAT").ok();
    crate::telemetry::init(crate::telemetry::json_requested(format.as_deref()));
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
    tracing::info!("signal received");
}
