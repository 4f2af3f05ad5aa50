//! The `weibo-relay-tooling` commands: the simulated platform, the demo, the benches.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use weibo_relay::cli::{init_telemetry, load, stop_signal};
use weibo_relay::settings::AmqpUrl;

/// What production never runs: the simulated Weibo platform, the demo, the load generators.
#[derive(Debug, Parser)]
#[command(name = "weibo-relay-tooling", version, about)]
pub struct Cli {
    /// TOML configuration file, as `weibo-relay` reads it (defaults apply to every key it
    /// leaves out).
    #[arg(long, global = true, env = "WEIBO_RELAY_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The tooling's commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// A simulated Weibo platform on loopback (merchants from the configuration).
    Sandbox(SandboxArgs),
    /// Sandbox + serve + a sample consumer end to end on the local RabbitMQ, then a summary.
    Demo(DemoArgs),
    /// Load generators and their report: the receiver, the broker alone, the worker.
    Bench {
        /// What to load (boxed: far larger than the other commands' arguments).
        #[command(subcommand)]
        kind: Box<BenchKind>,
    },
}

/// Runs the process and turns any error into a one-line reason and a non-zero exit.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Sandbox(args) => sandbox(cli.config, args),
        Command::Demo(args) => demo(cli.config, args),
        Command::Bench { kind } => bench(cli.config, *kind),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("weibo-relay-tooling: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// A broker URL on the command line, checked like `amqp.url` (the reason never repeats it).
fn amqp_url(text: &str) -> Result<AmqpUrl, String> {
    AmqpUrl::parse(text)
}

/// `weibo-relay-tooling sandbox` options; faults can be changed later through `/admin/faults`.
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
    /// How token, rate and system errors are answered: our model (`ecommerce`) or as Weibo's
    /// API gateway does (`weibo`: its own envelope at HTTP 400/403, the code as a string).
    #[arg(long, value_enum, default_value = "ecommerce")]
    pub error_envelope: crate::sandbox::ErrorEnvelope,
}

/// `weibo-relay-tooling demo` options.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Orders to create and push.
    #[arg(long, default_value_t = 200)]
    pub orders: usize,
    /// The platform gives up on every push for this many seconds from the start; the orders
    /// still end final, through reconciliation.
    #[arg(long, value_name = "SECS")]
    pub outage: Option<u64>,
    /// How the platform answers token, rate and system errors: our model (`ecommerce`) or as
    /// Weibo's API gateway does (`weibo`: its own envelope at HTTP 400/403, the code as a
    /// string).
    #[arg(long, value_enum, default_value = "ecommerce")]
    pub error_envelope: crate::sandbox::ErrorEnvelope,
    /// Order calls per second beyond which the platform answers "rate limited" (10023); the
    /// worker retries those calls.
    #[arg(long, value_name = "N")]
    pub platform_rate_limit: Option<u32>,
    /// The RabbitMQ to run on, instead of amqp.url (default: guest on 127.0.0.1:5672); e.g.
    /// the compose file's: amqp://relay:$RABBITMQ_PASSWORD@127.0.0.1:5672/%2f.
    #[arg(long, value_name = "URL")]
    pub amqp_url: Option<String>,
    /// Service-provider mode: the relay with a `[provider]` section and its store on the local
    /// PostgreSQL, `--merchants` merchants onboarded through the consent page, the orders
    /// spread among them.
    #[arg(long)]
    pub provider: bool,
    /// With `--provider`: how many merchants.
    #[arg(long, value_name = "N", default_value_t = 3, requires = "provider", value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub merchants: u16,
    /// With `--provider`: the PostgreSQL server the run's database is made on (and dropped
    /// from at the end).
    #[arg(long, value_name = "URL", default_value = crate::demo::provider::DEFAULT_SERVER, requires = "provider")]
    pub store_server: String,
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
        #[arg(long, value_name = "URL", value_parser = amqp_url)]
        amqp_url: Option<AmqpUrl>,
        /// The receiver's process id (same machine): report the CPU it spent per push.
        #[arg(long, value_name = "PID")]
        relay_pid: Option<u32>,
        /// Load and output.
        #[command(flatten)]
        load: LoadArgs,
    },
    /// Persistent, envelope-sized messages through the receiver's topology (and a counting
    /// queue, as `push --verify-queue` has) with confirms.
    Broker {
        /// Broker (default: amqp.url of the configuration).
        #[arg(long, value_name = "URL", value_parser = amqp_url)]
        amqp_url: Option<AmqpUrl>,
        /// Load and output.
        #[command(flatten)]
        load: LoadArgs,
    },
    /// Calls of a read interface through a running relay's platform gateway.
    Gateway {
        /// The gateway's base URL, such as http://127.0.0.1:8090.
        #[arg(long)]
        url: String,
        /// A client key the gateway knows (`weibo-relay gateway new-key`).
        #[arg(long)]
        key: String,
        /// The merchant to call for.
        #[arg(long)]
        appid: String,
        /// The interface called (a read).
        #[arg(long, default_value = "goods/getGoodsInfo")]
        interface: String,
        /// The relay's process id (same machine): report the CPU it spent per call.
        #[arg(long, value_name = "PID")]
        relay_pid: Option<u32>,
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

fn sandbox(config: Option<PathBuf>, args: SandboxArgs) -> anyhow::Result<()> {
    use crate::sandbox::{Faults, PushSchedule, PushSender, Sandbox, SandboxConfig};
    let settings = load(config)?;
    if settings.merchants.is_empty() {
        anyhow::bail!("the sandbox needs at least one [[merchants]] entry in the configuration");
    }
    let _telemetry = init_telemetry();
    let mut sandbox_config = SandboxConfig::new(settings.merchants);
    sandbox_config.bind = args.bind;
    sandbox_config.token_ttl = std::time::Duration::from_secs(args.token_ttl);
    sandbox_config.faults = Faults {
        latency_ms: args.latency_ms,
        error_rate: args.error_rate,
        rate_limit_per_sec: args.rate_limit_per_sec,
        error_envelope: args.error_envelope,
        ..Faults::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let stop = stop_signal();
        let handle = std::sync::Arc::new(Sandbox::start(sandbox_config)?);
        println!("oauth_base = \"{}\"", handle.base_url());
        println!("api_base = \"{}\"", handle.api_base());
        let sender = args.push_to.map(|url| {
            println!("pushing order changes to {url}");
            PushSender::start(&handle, url, PushSchedule::scaled(args.time_scale))
        });
        stop.await;
        if let Some(sender) = sender {
            sender.stop().await;
        }
        if let Ok(handle) = std::sync::Arc::try_unwrap(handle) {
            handle.stop().await;
        }
        Ok(())
    })
}

fn demo(config: Option<PathBuf>, args: DemoArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.orders > 0, "--orders must be at least 1");
    // Given on the command line, the URL is checked like amqp.url (it wins over the file and
    // the environment).
    let url = args
        .amqp_url
        .clone()
        .map(|url| ("WEIBO_RELAY__AMQP__URL".to_owned(), url));
    let settings =
        weibo_relay::settings::Settings::load(config.as_deref(), std::env::vars().chain(url))?;
    let _telemetry = if std::env::var_os("RUST_LOG").is_none() {
        // The summary is the demo's output; only warnings and errors interleave with it.
        weibo_relay::telemetry::init_with_default(false, "warn")
    } else {
        init_telemetry()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut options = crate::demo::DemoOptions::new(args.orders);
    options.outage = args.outage.map(std::time::Duration::from_secs);
    options.provider_merchants = args.provider.then_some(usize::from(args.merchants));
    options.store_server = args.store_server;
    options.faults = crate::sandbox::Faults {
        error_envelope: args.error_envelope,
        rate_limit_per_sec: args.platform_rate_limit,
        ..Default::default()
    };
    let interrupt = options.interrupt.clone();
    let report = runtime.block_on(async move {
        let signal = stop_signal();
        tokio::spawn(async move {
            signal.await;
            interrupt.cancel();
        });
        crate::demo::run(settings, options).await
    })?;
    println!("{report}");
    anyhow::ensure!(!report.interrupted, "interrupted");
    anyhow::ensure!(report.complete(), "not every order reached a final state");
    Ok(())
}

fn bench(config: Option<PathBuf>, kind: BenchKind) -> anyhow::Result<()> {
    let settings = load(config)?;
    let _telemetry = if std::env::var_os("RUST_LOG").is_none() {
        // The report is the output; only warnings and errors interleave with it.
        weibo_relay::telemetry::init_with_default(false, "warn")
    } else {
        init_telemetry()
    };
    let amqp_url = |url: Option<AmqpUrl>| url.unwrap_or_else(|| settings.amqp.url.clone());
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
            relay_pid,
            load,
        } => {
            let options = crate::bench::PushOptions {
                url,
                appid,
                sign_key,
                load: load.load(),
                verify_queue,
                events_exchange: settings.amqp.events_exchange.clone(),
                amqp_url: amqp_url(amqp),
                relay_pid,
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
        BenchKind::Gateway {
            url,
            key,
            appid,
            interface,
            relay_pid,
            load,
        } => {
            let options = crate::bench::GatewayOptions {
                url,
                key,
                appid,
                interface,
                load: load.load(),
                relay_pid,
            };
            (runtime.block_on(crate::bench::gateway(options))?, load.json)
        }
        BenchKind::Worker {
            latency_ms,
            rate_limit,
            load,
        } => {
            let options = crate::bench::WorkerOptions {
                load: load.load(),
                latency_ms,
                rate_limit_per_sec: rate_limit
                    .unwrap_or(settings.weibo.rate_limit_per_sec.as_u32()),
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
