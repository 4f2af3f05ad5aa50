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
    /// Receiver, fulfilment worker and token keeper in one process.
    Serve,
    /// The push receiver only.
    Receiver,
    /// A simulated Weibo platform on loopback (merchants from the configuration).
    Sandbox(SandboxArgs),
    /// The fulfilment worker and token keeper only.
    Worker,
    /// Inspect or redrive dead-lettered fulfilment commands.
    Dlq {
        /// What to do.
        #[command(subcommand)]
        action: DlqAction,
    },
    /// Sandbox + serve + a sample consumer end to end on the local RabbitMQ, then a summary.
    Demo {
        /// Orders to create and push.
        #[arg(long, default_value_t = 200)]
        orders: usize,
    },
    /// Load generators and their report: the receiver, the broker alone, the worker.
    Bench {
        /// What to load.
        #[command(subcommand)]
        kind: BenchKind,
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
    /// Push every order change, signed, to this URL (the relay's push endpoint).
    #[arg(long, value_name = "URL")]
    pub push_to: Option<String>,
    /// Multiplies the redelivery schedule (1 min, 5 min, 15 min); 0.01 makes it 100x faster.
    #[arg(long, default_value_t = 1.0)]
    pub time_scale: f64,
}

/// Options every bench takes: how much load, its time bound, and the output format.
#[derive(Debug, Clone, clap::Args)]
pub struct LoadArgs {
    /// Requests in flight at once (for `worker`: the worker's concurrency).
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Requests in all.
    #[arg(long, default_value_t = 1000)]
    pub events: u64,
    /// No request starts after this many seconds; the run ends once those in flight finish.
    #[arg(long, default_value_t = 120, value_name = "SECS")]
    pub max_secs: u64,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
}

impl LoadArgs {
    fn load(&self) -> crate::bench::Load {
        crate::bench::Load {
            concurrency: self.concurrency,
            events: self.events,
            max_time: std::time::Duration::from_secs(self.max_secs),
        }
    }
}

/// `bench` subcommands.
#[derive(Debug, Subcommand)]
pub enum BenchKind {
    /// Distinct signed pushes to a receiver over keep-alive connections.
    Push {
        /// The receiver's push URL, such as http://127.0.0.1:8080/weibo/push.
        #[arg(long)]
        url: String,
        /// The merchant's appid.
        #[arg(long)]
        appid: String,
        /// The merchant's sign key.
        #[arg(long)]
        sign_key: String,
        /// Afterwards, count this queue and report any difference from the 200 answers.
        #[arg(long, value_name = "QUEUE")]
        verify_queue: Option<String>,
        /// Broker for --verify-queue (default: amqp.url of the configuration).
        #[arg(long, value_name = "URL")]
        amqp_url: Option<String>,
        /// Load and output.
        #[command(flatten)]
        load: LoadArgs,
    },
    /// Persistent, envelope-sized messages straight to a quorum queue with confirms.
    Broker {
        /// Broker (default: amqp.url of the configuration).
        #[arg(long, value_name = "URL")]
        amqp_url: Option<String>,
        /// Load and output.
        #[command(flatten)]
        load: LoadArgs,
    },
    /// Finish commands through a worker against the sandbox with a set latency.
    Worker {
        /// Latency the sandbox adds to every platform call, in milliseconds.
        #[arg(long, default_value_t = 50)]
        latency_ms: u64,
        /// The worker's weibo.rate_limit_per_sec (default: the configuration's).
        #[arg(long, value_name = "N")]
        rate_limit: Option<u32>,
        /// Load and output.
        #[command(flatten)]
        load: LoadArgs,
    },
}

/// `dlq` subcommands.
#[derive(Debug, Subcommand)]
pub enum DlqAction {
    /// Print dead commands with their reasons (they stay in the dead queue).
    List {
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// One JSON object per line instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Move dead commands back to the work queue with the attempt count reset.
    Redrive {
        /// At most this many.
        #[arg(long, default_value_t = usize::MAX)]
        limit: usize,
    },
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
        Command::Worker => serve(cli.config, Roles::Worker),
        Command::Demo { orders } => demo(cli.config, orders),
        Command::Dlq { action } => dlq(cli.config, action),
        Command::Bench { kind } => bench(cli.config, kind),
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
    use crate::sandbox::{Faults, PushSchedule, PushSender, Sandbox, SandboxConfig};
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
        let handle = std::sync::Arc::new(Sandbox::start(sandbox_config)?);
        println!("oauth_base = \"{}\"", handle.base_url());
        println!("api_base = \"{}\"", handle.api_base());
        let sender = args.push_to.map(|url| {
            println!("pushing order changes to {url}");
            PushSender::start(&handle, url, PushSchedule::scaled(args.time_scale))
        });
        wait_for_signal().await;
        if let Some(sender) = sender {
            sender.stop().await;
        }
        if let Ok(handle) = std::sync::Arc::try_unwrap(handle) {
            handle.stop().await;
        }
        Ok(())
    })
}

fn dlq(config: Option<PathBuf>, action: DlqAction) -> anyhow::Result<()> {
    let settings = load(config)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let amqp = &settings.amqp;
        match action {
            DlqAction::List { limit, json } => {
                let dead = crate::worker::dlq::list(amqp, limit).await?;
                for d in &dead {
                    if json {
                        println!("{}", serde_json::to_string(d)?);
                    } else {
                        println!(
                            "attempts={} last_code={} reason={:?} command={}",
                            d.attempts,
                            d.last_code.as_deref().unwrap_or("none"),
                            d.reason.as_deref().unwrap_or(""),
                            d.body
                        );
                    }
                }
                if !json {
                    eprintln!("{} dead command(s) listed", dead.len());
                }
            }
            DlqAction::Redrive { limit } => {
                let moved = crate::worker::dlq::redrive(amqp, limit).await?;
                println!("{moved} command(s) moved back to {}", amqp.fulfilment_queue);
            }
        }
        Ok(())
    })
}

fn demo(config: Option<PathBuf>, orders: usize) -> anyhow::Result<()> {
    anyhow::ensure!(orders > 0, "--orders must be at least 1");
    let settings = load(config)?;
    if std::env::var_os("RUST_LOG").is_none() {
        // The summary is the demo's output; only warnings and errors interleave with it.
        crate::telemetry::init_with_default(false, "warn");
    } else {
        init_telemetry();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(crate::demo::run(
        settings,
        crate::demo::DemoOptions::new(orders),
    ))?;
    println!("{report}");
    anyhow::ensure!(report.complete(), "not every order reached a final state");
    Ok(())
}

fn bench(config: Option<PathBuf>, kind: BenchKind) -> anyhow::Result<()> {
    use secrecy::ExposeSecret;
    let settings = load(config)?;
    if std::env::var_os("RUST_LOG").is_none() {
        // The report is the output; only warnings and errors interleave with it.
        crate::telemetry::init_with_default(false, "warn");
    } else {
        init_telemetry();
    }
    let amqp_url =
        |url: Option<String>| url.unwrap_or_else(|| settings.amqp.url.expose_secret().to_owned());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let (report, json) = match kind {
        BenchKind::Push {
            url,
            appid,
            sign_key,
            verify_queue,
            amqp_url: amqp,
            load,
        } => {
            let options = crate::bench::PushOptions {
                url,
                appid,
                sign_key,
                load: load.load(),
                verify_queue,
                amqp_url: amqp_url(amqp),
            };
            (runtime.block_on(crate::bench::push(options))?, load.json)
        }
        BenchKind::Broker {
            amqp_url: amqp,
            load,
        } => {
            let options = crate::bench::BrokerOptions {
                amqp_url: amqp_url(amqp),
                load: load.load(),
            };
            (runtime.block_on(crate::bench::broker(options))?, load.json)
        }
        BenchKind::Worker {
            latency_ms,
            rate_limit,
            load,
        } => {
            let options = crate::bench::WorkerOptions {
                load: load.load(),
                latency_ms,
                rate_limit_per_sec: rate_limit.unwrap_or(settings.weibo.rate_limit_per_sec),
            };
            let settings = settings.clone();
            (
                runtime.block_on(crate::bench::worker(settings, options))?,
                load.json,
            )
        }
    };
    // writeln, not println: a closed pipe (`| head`) is an error to report, not a panic.
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", report.to_json())?;
    } else {
        writeln!(out, "{report}")?;
    }
    Ok(())
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
