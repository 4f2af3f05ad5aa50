//! Arguments of the tool commands (sandbox, bench, dlq).

use clap::Subcommand;

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
    /// How token, rate and system errors are answered: our model (`ecommerce`) or as Weibo's
    /// API gateway does (`weibo`: its own envelope at HTTP 400/403, the code as a string).
    #[arg(long, value_enum, default_value = "ecommerce")]
    pub error_envelope: crate::sandbox::ErrorEnvelope,
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
    pub(super) fn load(&self) -> crate::bench::Load {
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
        /// At most this many (all of them when absent).
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Remove one dead command for good (the id `dlq list` shows): one that must never be
    /// retried.
    Drop {
        /// The id `dlq list` shows.
        #[arg(long)]
        id: String,
    },
}

/// `events` subcommands.
#[derive(Debug, Subcommand)]
pub enum EventsAction {
    /// Publish events of the event log again, to a queue (which must exist).
    Replay {
        /// Events received this long ago or later (e.g. 2h, 30m, 1day).
        #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
        since: std::time::Duration,
        /// ... up to this long ago (default: now).
        #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
        until: Option<std::time::Duration>,
        /// Only this merchant's events.
        #[arg(long)]
        appid: Option<String>,
        /// Only this sub order's events.
        #[arg(long)]
        sub_order_id: Option<String>,
        /// The queue to publish them to, through the default exchange.
        #[arg(long, value_name = "QUEUE")]
        to_queue: String,
    },
    /// Print events as they arrive, one line each, until interrupted.
    Tail {
        /// Only this merchant's events.
        #[arg(long)]
        appid: Option<String>,
    },
}
