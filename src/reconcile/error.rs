//! How a merchant's sweep ended, and why one stopped.

use crate::amqp::PublishError;
use crate::event::log::LogError;
use crate::ids::AppId;
use crate::permits::NoPermit;
use crate::tokens::NoToken;
use crate::weibo::CallOutcome;

use super::Truncation;

/// Why a merchant's sweep stopped; it is tried again at the next interval.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    /// No token.
    #[error(transparent)]
    Token(#[from] NoToken),
    /// No permit to call.
    #[error(transparent)]
    Permit(#[from] NoPermit),
    /// The platform did not answer the list call with a list.
    #[error("retailerGetSubList failed: {0}")]
    Platform(CallOutcome),
    /// The event log could not be read.
    #[error("event log not read: {0}")]
    Log(#[from] LogError),
    /// A reconciled event was not stored.
    #[error("reconciled event not stored: {0}")]
    Publish(#[from] PublishError),
    /// No broker connection.
    #[error("broker not connected")]
    NotConnected,
    /// This process stopped being the token keeper during the sweep.
    #[error("no longer the token keeper")]
    NotLeading,
    /// The process is stopping.
    #[error("stopping")]
    Stopping,
    /// No keys to seal an event of this merchant with (merchants and keys both come from
    /// the settings, so never expected).
    #[error("no keys for appid {0}")]
    NoKeys(AppId),
}

/// How a sweep of one merchant ended when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Swept {
    /// Events published.
    pub(super) published: u64,
    /// Why it stopped before the end of the list, if it did.
    pub(super) truncated: Option<Truncation>,
}
