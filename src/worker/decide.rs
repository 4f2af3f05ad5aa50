//! Turning one delivery into a decision: call the platform (with the token compensation
//! path) and choose the command's next home.

use std::time::Instant;

use lapin::message::Delivery;

use super::command::{Command, Verdict};
use super::{headers, Worker};
use crate::config::Merchant;
use crate::token::KeeperError;
use crate::weibo::CallOutcome;

/// Where a command goes next; the delivery is acked only once that home confirmed it.
#[derive(Debug)]
pub(super) enum Next {
    /// The platform has it: publish `fulfilment.succeeded`.
    Succeeded {
        command: Command,
        attempts: u32,
        code: i64,
    },
    /// Try again later from the delay queue of step `delay_step`.
    Retry {
        attempts: u32,
        delay_step: u32,
        code: Option<i64>,
        reason: String,
    },
    /// Give up: `.dead` with the reason, and `fulfilment.failed` when it was a command.
    Dead {
        command: Option<Command>,
        attempts: u32,
        code: Option<i64>,
        reason: String,
        cause: &'static str,
    },
}

impl Worker {
    /// Decides what happens to one delivery. Never fails: every input has a next home.
    #[tracing::instrument(
        name = "command",
        skip_all,
        fields(appid, sub_order_id, action, attempt)
    )]
    pub(super) async fn decide(&self, delivery: &Delivery) -> Next {
        let before = headers::attempts(&delivery.properties);
        let command = match Command::parse(&delivery.data) {
            Ok(c) => c,
            Err(reason) => {
                return Next::Dead {
                    command: None,
                    attempts: before,
                    code: None,
                    reason,
                    cause: "malformed",
                }
            }
        };
        let span = tracing::Span::current();
        span.record("appid", command.appid());
        span.record("sub_order_id", command.sub_order_id());
        span.record("action", command.action_name());
        let Some(merchant) = self.merchants.get(command.appid()) else {
            let reason = format!("unknown appid {}", command.appid());
            return Next::Dead {
                command: Some(command),
                attempts: before,
                code: None,
                reason,
                cause: "unknown_merchant",
            };
        };
        let attempt = before + 1;
        span.record("attempt", attempt);

        // The compensation path: a rejected token is reported to the keeper, and the call
        // is retried once with the token the keeper holds next.
        let mut outcome = self.call_once(merchant, &command).await;
        if let Ok(CallOutcome::TokenRejected { .. }) = outcome {
            outcome = self.call_once(merchant, &command).await;
        }
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(error) => {
                // Not an attempt on the platform: the command waits without using one up.
                tracing::warn!(%error, "no access_token; command waits in the delay queue");
                return Next::Retry {
                    attempts: before,
                    delay_step: before.max(1),
                    code: None,
                    reason: error.to_string(),
                };
            }
        };
        tracing::info!(?outcome, "platform answered");
        self.next_after(command, attempt, outcome)
    }

    async fn call_once(
        &self,
        merchant: &Merchant,
        command: &Command,
    ) -> Result<CallOutcome, KeeperError> {
        let token = self.keeper.get(command.appid()).await?;
        self.limiter.until_ready().await;
        let started = Instant::now();
        let outcome = match command.verdict() {
            Verdict::Finish => {
                self.client
                    .finish(merchant, command.sub_order_id(), &token)
                    .await
            }
            Verdict::Close { reason } => {
                self.client
                    .close(merchant, command.sub_order_id(), reason, &token)
                    .await
            }
        };
        self.metrics.call(
            command.action_name(),
            outcome_label(&outcome),
            started.elapsed().as_secs_f64(),
        );
        if let CallOutcome::TokenRejected { .. } = outcome {
            // Only this merchant's keeper task refreshes, once, however many calls report it.
            self.keeper.invalidate(command.appid(), &token)?;
        }
        Ok(outcome)
    }

    fn next_after(&self, command: Command, attempt: u32, outcome: CallOutcome) -> Next {
        let (code, reason) = match outcome {
            CallOutcome::Succeeded { code } => {
                return Next::Succeeded {
                    command,
                    attempts: attempt,
                    code,
                }
            }
            CallOutcome::Permanent { code, msg } => {
                return Next::Dead {
                    command: Some(command),
                    attempts: attempt,
                    code,
                    reason: format!("platform refused: {msg}"),
                    cause: "permanent",
                }
            }
            // Rejected even after a fresh token: treated like any transient failure.
            CallOutcome::TokenRejected { code } => {
                (Some(code), "access_token rejected twice".to_owned())
            }
            CallOutcome::Transient { code, reason } => (code, reason),
        };
        if attempt >= self.policy.max_attempts() {
            Next::Dead {
                command: Some(command),
                attempts: attempt,
                code,
                reason: format!("gave up after {attempt} attempts: {reason}"),
                cause: "exhausted",
            }
        } else {
            Next::Retry {
                attempts: attempt,
                delay_step: attempt,
                code,
                reason,
            }
        }
    }
}

fn outcome_label(outcome: &CallOutcome) -> &'static str {
    match outcome {
        CallOutcome::Succeeded { .. } => "succeeded",
        CallOutcome::TokenRejected { .. } => "token_rejected",
        CallOutcome::Transient { .. } => "transient",
        CallOutcome::Permanent { .. } => "permanent",
    }
}
