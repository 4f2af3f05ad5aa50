//! Turning one delivery into a decision: call the platform (with the token compensation
//! path) and choose the command's next home.

use std::time::Instant;

use lapin::message::Delivery;
use secrecy::ExposeSecret;

use super::attempt::Attempt;
use super::command::{Command, Verdict};
use super::metrics::CallResult;
use super::{headers, Worker};
use crate::permits::NoPermit;
use crate::settings::{Merchant, Merchants};
use crate::tokens::NoToken;
use crate::weibo::CallOutcome;

/// Why a command was dead-lettered: the `cause` label of `weibo_relay_dead_letters_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::EnumIter, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum DeadCause {
    /// Not a command at all.
    Malformed,
    /// Names an appid this relay does not serve (provider mode: a merchant_ref it does not
    /// know, or none).
    UnknownMerchant,
    /// The platform refused it for good.
    Permanent,
    /// Every attempt failed.
    Exhausted,
    /// A call command's interface is outside the catalogue or refused to commands.
    Refused,
    /// A call command's write may have happened (time-out, lost connection): not repeated.
    Unknown,
}

/// A command of a configured merchant, as the checks before any call let it through.
#[derive(Debug, Clone, PartialEq)]
pub struct Admitted<'m> {
    /// The command.
    pub command: Command,
    /// Its merchant: the keys its calls are signed with and its attempts sealed with.
    pub merchant: &'m Merchant,
}

/// Where a command goes next; the delivery is acked only once that home confirmed it.
#[derive(Debug, PartialEq)]
pub enum Next<'m> {
    /// The platform has it: publish `fulfilment.succeeded`.
    Succeeded {
        /// The command.
        command: Command,
        /// Attempts it took.
        attempts: u32,
        /// 0, or the idempotent code.
        code: i64,
        /// A call command's answer: the platform's `data`.
        data: Option<serde_json::Value>,
    },
    /// Try again later from the delay queue of the schedule's delay after `attempts` (after
    /// the first, for a command that waited without an attempt).
    Retry {
        /// The command and its merchant, whose key seals the count into the republished one.
        admitted: Admitted<'m>,
        /// Attempts made so far.
        attempts: u32,
        /// The platform code of the last answer, if one was read.
        code: Option<i64>,
        /// Why, for logs.
        reason: String,
    },
    /// Give up: `.dead` with the reason, and `fulfilment.failed` when it was a command.
    Dead {
        /// The command, when the body was one.
        command: Option<Command>,
        /// Attempts made.
        attempts: u32,
        /// The platform code of the last answer, if one was read.
        code: Option<i64>,
        /// Why, for `x-death-reason`.
        reason: String,
        /// The metric label.
        cause: DeadCause,
    },
}

/// The decision table: what follows the platform's `outcome` on `attempt` of `admitted`.
pub fn next_after(admitted: Admitted<'_>, attempt: Attempt, outcome: CallOutcome) -> Next<'_> {
    let attempts = attempt.number();
    let (code, reason) = match outcome {
        CallOutcome::Succeeded { code } => {
            return Next::Succeeded {
                command: admitted.command,
                attempts,
                code,
                data: None,
            }
        }
        CallOutcome::Permanent { code, msg } => {
            return Next::Dead {
                command: Some(admitted.command),
                attempts,
                code,
                reason: format!("platform refused: {msg}"),
                cause: DeadCause::Permanent,
            }
        }
        // Rejected even after a fresh token: treated like any transient failure.
        CallOutcome::TokenRejected { code } => {
            (Some(code), "access_token rejected twice".to_owned())
        }
        CallOutcome::Transient { code, reason } => (code, reason),
    };
    if attempt.is_last() {
        Next::Dead {
            command: Some(admitted.command),
            attempts,
            code,
            reason: format!("gave up after {attempts} attempts: {reason}"),
            cause: DeadCause::Exhausted,
        }
    } else {
        Next::Retry {
            admitted,
            attempts,
            code,
            reason,
        }
    }
}

/// The checks before any call: the body is a command, of a merchant this relay serves, with
/// an attempt left after those the relay sealed into it (`attempts_made`). A command that
/// fails one goes straight to `.dead`; one that passes comes back with its merchant and the
/// attempt to make.
// The error is the command's decision itself, made once per delivery and moved straight into
// settling: boxing it would only add an allocation.
#[allow(clippy::result_large_err)]
pub fn admit<'m>(
    body: &[u8],
    merchants: &'m Merchants,
    max_attempts: u32,
    attempts_made: impl FnOnce(&Merchant) -> u32,
) -> Result<(Admitted<'m>, Attempt), Next<'m>> {
    let command = Command::parse(body).map_err(|reason| Next::Dead {
        command: None,
        attempts: 0,
        code: None,
        reason,
        cause: DeadCause::Malformed,
    })?;
    let Some(merchant) = merchants.get(command.appid()) else {
        let reason = format!("unknown appid {}", command.appid());
        return Err(Next::Dead {
            command: Some(command),
            attempts: 0,
            code: None,
            reason,
            cause: DeadCause::UnknownMerchant,
        });
    };
    let before = attempts_made(merchant);
    let Some(attempt) = Attempt::after(before, max_attempts) else {
        // Possible only when max_attempts was lowered while the command waited.
        return Err(Next::Dead {
            command: Some(command),
            attempts: before,
            code: None,
            reason: format!("already made {before} attempts, the limit is {max_attempts}"),
            cause: DeadCause::Exhausted,
        });
    };
    Ok((Admitted { command, merchant }, attempt))
}

/// Why a call could not be made: no token, or no permit to call.
#[derive(Debug, thiserror::Error)]
enum Blocked {
    #[error(transparent)]
    Token(#[from] NoToken),
    #[error(transparent)]
    Permit(#[from] NoPermit),
}

/// One call's result: what it came to, a call command's `data`, and whether a write's fate is
/// unknown.
struct Called {
    outcome: CallOutcome,
    data: Option<serde_json::Value>,
    unsure: bool,
}

/// What happens to a command that could not be called: it waits without using an attempt.
fn parked<'m>(admitted: Admitted<'m>, attempt: Attempt, error: &dyn std::fmt::Display) -> Next<'m> {
    Next::Retry {
        admitted,
        attempts: attempt.number().saturating_sub(1),
        code: None,
        reason: error.to_string(),
    }
}

impl Worker {
    /// Decides what happens to one delivery. Never fails: every input has a next home.
    #[tracing::instrument(
        name = "command",
        skip_all,
        fields(appid, sub_order_id, action, attempt)
    )]
    pub(super) async fn decide(&self, delivery: &Delivery) -> Next<'_> {
        let max = self.policy.max_attempts();
        let (admitted, attempt) = match admit(&delivery.data, &self.merchants, max, |m| {
            headers::sealed_attempts(
                &delivery.properties,
                &delivery.data,
                m.sign_key().expose_secret().as_bytes(),
            )
        }) {
            Ok(admitted) => admitted,
            Err(dead) => return dead,
        };
        let command = &admitted.command;
        let span = tracing::Span::current();
        span.record("appid", command.appid().as_str());
        if let Some(id) = command.sub_order_id() {
            span.record("sub_order_id", id.as_str());
        }
        span.record("action", command.action_name());
        span.record("attempt", attempt.number());
        if let Verdict::Call(call) = command.verdict() {
            if let Err(reason) = self.callable(&call.interface) {
                return Next::Dead {
                    command: Some(admitted.command),
                    attempts: attempt.number().saturating_sub(1),
                    code: None,
                    reason,
                    cause: DeadCause::Refused,
                };
            }
        }

        // The compensation path: a rejected token is reported to the keeper, and the call
        // is retried once with the token the keeper holds next.
        let mut called = self.call_once(&admitted).await;
        if let Ok(Called {
            outcome: CallOutcome::TokenRejected { .. },
            ..
        }) = called
        {
            called = self.call_once(&admitted).await;
        }
        match called {
            Ok(Called {
                outcome,
                unsure: true,
                ..
            }) => {
                tracing::warn!(%outcome, "a write's fate is unknown; it is not repeated");
                let code = match outcome {
                    CallOutcome::Transient { code, .. } => code,
                    _ => None,
                };
                Next::Dead {
                    command: Some(admitted.command),
                    attempts: attempt.number(),
                    code,
                    reason: format!(
                        "fate unknown, not repeated: {outcome}; read back before a redrive"
                    ),
                    cause: DeadCause::Unknown,
                }
            }
            Ok(Called { outcome, data, .. }) => {
                tracing::info!(%outcome, "platform answered");
                let mut next = next_after(admitted, attempt, outcome);
                if let Next::Succeeded { data: answered, .. } = &mut next {
                    *answered = data;
                }
                next
            }
            Err(Blocked::Token(
                error @ (NoToken::NoMerchantRef
                | NoToken::UnknownMerchant(_)
                | NoToken::UnknownUid(_)
                | NoToken::MerchantMismatch { .. }),
            )) => Next::Dead {
                reason: error.to_string(),
                command: Some(admitted.command),
                attempts: attempt.number().saturating_sub(1),
                code: None,
                cause: DeadCause::UnknownMerchant,
            },
            // Only the merchant can end this (by authorizing again): each try uses an
            // attempt, so the command is dead-lettered with the reason rather than kept forever.
            Err(Blocked::Token(error @ NoToken::NotAuthorized(_))) => {
                tracing::warn!(%error, "command not called");
                let reason = error.to_string();
                next_after(
                    admitted,
                    attempt,
                    CallOutcome::Transient { code: None, reason },
                )
            }
            Err(error) => {
                // Not an attempt on the platform: the command waits without using one up.
                tracing::warn!(%error, "command not called; it waits in the delay queue");
                parked(admitted, attempt, &error)
            }
        }
    }

    /// Whether a call command may call `interface`: in the catalogue, not refused to
    /// commands.
    fn callable(&self, interface: &str) -> Result<(), String> {
        match self.interfaces.get(interface) {
            None => Err(format!(
                "interface {interface} is not in the catalogue (gateway.interfaces)"
            )),
            Some(spec) if !spec.commands => Err(format!(
                "interface {interface} is refused to commands (gateway.interfaces, commands = false)"
            )),
            Some(_) => Ok(()),
        }
    }

    async fn call_once(&self, admitted: &Admitted<'_>) -> Result<Called, Blocked> {
        let Admitted { command, merchant } = admitted;
        let held = self
            .tokens
            .for_command(command.appid(), command.merchant())
            .await?;
        let token = &held.token;
        // The deployment's rate, shared with every other worker through the keeper's permits.
        self.permits.take().await?;
        let started = Instant::now();
        let (mut data, mut unsure) = (None, false);
        let outcome = match (command.verdict(), command.sub_order_id()) {
            (Verdict::Finish, Some(id)) => self.client.finish(merchant, id, token).await,
            (Verdict::Close { reason }, Some(id)) => {
                self.client.close(merchant, id, reason, token).await
            }
            (Verdict::Call(call), _) => {
                let spec = self.interfaces.get(&call.interface).copied();
                let method = spec.map_or(crate::settings::PlatformMethod::Post, |s| s.method);
                let request = crate::weibo::InterfaceCall {
                    interface: &call.interface,
                    method,
                    params: &call.params,
                };
                let reply = self.client.call(merchant, request, token).await;
                // A write the platform may have acted on is never sent again.
                unsure = spec.is_none_or(|s| s.writes)
                    && !reply.not_acted
                    && matches!(reply.outcome, CallOutcome::Transient { .. });
                data = Some(reply.data);
                reply.outcome
            }
            // Parsing gives finish and close a sub order: never reached.
            (_, None) => CallOutcome::Permanent {
                code: None,
                msg: "no sub_order_id".into(),
            },
        };
        self.metrics.call(
            command.action(),
            CallResult::from(&outcome),
            started.elapsed().as_secs_f64(),
        );
        if let CallOutcome::TokenRejected { .. } = outcome {
            // One refresh however many calls report it (see `Tokens::rejected`).
            self.tokens.rejected(command.appid(), &held).await?;
        }
        Ok(Called {
            outcome,
            data,
            unsure,
        })
    }
}

#[cfg(test)]
mod tests;
