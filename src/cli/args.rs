//! Arguments of the operator commands (dlq, events).

use clap::Subcommand;

use crate::ids::AppId;

/// An appid on the command line.
fn appid(text: &str) -> Result<AppId, &'static str> {
    AppId::parse(text).ok_or(AppId::RULE)
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
    /// Move dead commands back to the work queue with the attempt count reset, each once: at
    /// most those the dead queue holds when it starts (one that fails again stays dead).
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
        #[arg(long, value_parser = appid)]
        appid: Option<AppId>,
        /// Only this sub order's events.
        #[arg(long)]
        sub_order_id: Option<String>,
        /// Only events whose routing key matches, as a topic binding would (`*` one word,
        /// `#` zero or more), e.g. `order.sub_order.201` or `order.*.30*`.
        #[arg(long, value_name = "PATTERN")]
        routing_key: Option<crate::event::topic::TopicPattern>,
        /// The queue to publish them to (it must exist), each with its own routing key.
        #[arg(long, value_name = "QUEUE")]
        to_queue: String,
    },
    /// Print events as they arrive, one line each, until interrupted.
    Tail {
        /// Only this merchant's events.
        #[arg(long, value_parser = appid)]
        appid: Option<AppId>,
    },
}
