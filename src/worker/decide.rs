//! Turning one delivery into a decision: call the platform (with the token compensation
//! path) and choose the command's next home.

use std::time::Instant;

use lapin::message::Delivery;
use secrecy::ExposeSecret;

use super::command::{Command, Verdict};
use super::metrics::CallResult;
use super::{headers, Worker};
use crate::keeper::KeeperError;
use crate::permits::NoPermit;
use crate::settings::{Merchant, Merchants};
use crate::weibo::CallOutcome;

/// Why a command was dead-lettered: the `cause` label of `weibo_relay_dead_letters_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::EnumIter, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum DeadCause {
    /// Not a command at all.
    Malformed,
    /// Names an appid this relay does not serve.
    UnknownMerchant,
    /// The platform refused it for good.
    Permanent,
    /// Every attempt failed.
    Exhausted,
}

impl DeadCause {
    /// Every variant, in declaration order; a new variant is in it without a word (strum),
    /// so every series exists from the start.
    pub fn all() -> impl Iterator<Item = Self> {
        <Self as strum::IntoEnumIterator>::iter()
    }

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        // The variant's name in snake_case (strum): a new variant brings its label along.
        self.into()
    }
}

/// Where a command goes next; the delivery is acked only once that home confirmed it.
#[derive(Debug, PartialEq)]
pub enum Next {
    /// The platform has it: publish `fulfilment.succeeded`.
    Succeeded {
        /// The command.
        command: Command,
        /// Attempts it took.
        attempts: u32,
        /// 0, or the idempotent code.
        code: i64,
    },
    /// Try again later from the delay queue of `step`.
    Retry {
        /// The command.
        command: Command,
        /// Attempts made so far (sealed into the republished command).
        attempts: u32,
        /// Which delay of the schedule to wait.
        step: u32,
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

/// The decision table: what follows the platform's `outcome` on the `attempt`-th try (1-based)
/// of `command`, with `max_attempts` allowed.
pub fn next_after(max_attempts: u32, command: Command, attempt: u32, outcome: CallOutcome) -> Next {
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
                cause: DeadCause::Permanent,
            }
        }
        // Rejected even after a fresh token: treated like any transient failure.
        CallOutcome::TokenRejected { code } => {
            (Some(code), "access_token rejected twice".to_owned())
        }
        CallOutcome::Transient { code, reason } => (code, reason),
    };
    if attempt >= max_attempts {
        Next::Dead {
            command: Some(command),
            attempts: attempt,
            code,
            reason: format!("gave up after {attempt} attempts: {reason}"),
            cause: DeadCause::Exhausted,
        }
    } else {
        Next::Retry {
            command,
            attempts: attempt,
            step: attempt,
            code,
            reason,
        }
    }
}

/// The checks before any call: the body is a command, of a merchant this relay serves, with
/// attempts left (the count the relay sealed into it: `attempts_made`). A command that fails
/// one goes straight to `.dead`; one that passes comes back with its merchant and the number
/// of attempts already made.
pub fn admit<'m>(
    body: &[u8],
    merchants: &'m Merchants,
    max_attempts: u32,
    attempts_made: impl FnOnce(&Merchant) -> u32,
) -> Result<(Command, &'m Merchant, u32), Next> {
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
    if before >= max_attempts {
        // Possible only when max_attempts was lowered while the command waited.
        return Err(Next::Dead {
            command: Some(command),
            attempts: before,
            code: None,
            reason: format!("already made {before} attempts, the limit is {max_attempts}"),
            cause: DeadCause::Exhausted,
        });
    }
    Ok((command, merchant, before))
}

/// Why a call could not be made: no token, or no permit to call.
#[derive(Debug, thiserror::Error)]
enum Blocked {
    #[error(transparent)]
    Token(#[from] KeeperError),
    #[error(transparent)]
    Permit(#[from] NoPermit),
}

/// What happens to a command that could not be called: it waits without using an attempt.
fn parked(command: Command, before: u32, error: &dyn std::fmt::Display) -> Next {
    Next::Retry {
        command,
        attempts: before,
        step: before.max(1),
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
    pub(super) async fn decide(&self, delivery: &Delivery) -> Next {
        let max = self.policy.max_attempts();
        let (command, merchant, before) = match admit(&delivery.data, &self.merchants, max, |m| {
            headers::sealed_attempts(
                &delivery.properties,
                &delivery.data,
                m.sign_key().expose_secret().as_bytes(),
            )
        }) {
            Ok(admitted) => admitted,
            Err(dead) => return dead,
        };
        let span = tracing::Span::current();
        span.record("appid", command.appid().as_str());
        span.record("sub_order_id", command.sub_order_id().as_str());
        span.record("action", command.action_name());
        let attempt = before + 1;
        span.record("attempt", attempt);

        // The compensation path: a rejected token is reported to the keeper, and the call
        // is retried once with the token the keeper holds next.
        let mut outcome = self.call_once(merchant, &command).await;
        if let Ok(CallOutcome::TokenRejected { .. }) = outcome {
            outcome = self.call_once(merchant, &command).await;
        }
        match outcome {
            Ok(outcome) => {
                tracing::info!(%outcome, "platform answered");
                next_after(max, command, attempt, outcome)
            }
            Err(error) => {
                // Not an attempt on the platform: the command waits without using one up.
                tracing::warn!(%error, "command not called; it waits in the delay queue");
                parked(command, before, &error)
            }
        }
    }

    async fn call_once(
        &self,
        merchant: &Merchant,
        command: &Command,
    ) -> Result<CallOutcome, Blocked> {
        let token = self.keeper.get(command.appid()).await?;
        // The deployment's rate, shared with every other worker through the keeper's permits.
        self.permits.take().await?;
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
            command.action(),
            CallResult::from(&outcome),
            started.elapsed().as_secs_f64(),
        );
        if let CallOutcome::TokenRejected { .. } = outcome {
            // Only this merchant's keeper task refreshes, once, however many calls report it.
            self.keeper.invalidate(command.appid(), &token)?;
        }
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finish() -> Command {
        Command::new("100023", "42", Verdict::Finish)
    }

    fn transient(code: Option<i64>) -> CallOutcome {
        CallOutcome::Transient {
            code,
            reason: "HTTP 503".into(),
        }
    }

    /// What a row of the table expects, in the table's own terms.
    #[derive(Debug)]
    enum Expect {
        Succeeds(u32, i64),
        Retries(u32, Option<i64>),
        Dies(u32, Option<i64>, DeadCause),
    }

    #[test]
    fn the_decision_table() {
        use CallOutcome::*;
        use Expect::*;
        let permanent = Permanent {
            code: Some(40001),
            msg: "bad sign".into(),
        };
        for (max, attempt, outcome, expected) in [
            (8, 1, Succeeded { code: 0 }, Succeeds(1, 0)),
            (8, 8, Succeeded { code: 70102 }, Succeeds(8, 70102)),
            (8, 1, permanent, Dies(1, Some(40001), DeadCause::Permanent)),
            (8, 1, transient(None), Retries(1, None)),
            (8, 7, transient(Some(10023)), Retries(7, Some(10023))),
            (8, 3, TokenRejected { code: 21327 }, Retries(3, Some(21327))),
            (8, 8, transient(None), Dies(8, None, DeadCause::Exhausted)),
            (
                8,
                8,
                TokenRejected { code: 21327 },
                Dies(8, Some(21327), DeadCause::Exhausted),
            ),
            (
                1,
                1,
                transient(Some(10002)),
                Dies(1, Some(10002), DeadCause::Exhausted),
            ),
        ] {
            let next = next_after(max, finish(), attempt, outcome.clone());
            let ok = match (&expected, &next) {
                (
                    Succeeds(a, c),
                    Next::Succeeded {
                        attempts,
                        code,
                        command,
                    },
                ) => (a, c) == (attempts, code) && *command == finish(),
                (
                    Retries(a, c),
                    Next::Retry {
                        attempts,
                        step,
                        code,
                        command,
                        ..
                    },
                ) => (a, c) == (attempts, code) && step == attempts && *command == finish(),
                (
                    Dies(a, c, k),
                    Next::Dead {
                        attempts,
                        code,
                        cause,
                        command,
                        ..
                    },
                ) => (a, c, k) == (attempts, code, cause) && command.as_ref() == Some(&finish()),
                _ => false,
            };
            assert!(
                ok,
                "{outcome:?} on attempt {attempt}/{max}: expected {expected:?}, got {next:?}"
            );
        }
    }

    fn merchants() -> Merchants {
        crate::settings::Settings::from_toml(
            "[[merchants]]\nappid = \"100023\"\nsign_key = \"sign-key-0123456789abcdef\"\nclient_id = \"772915\"\nclient_secret = \"client-secret-0123456789\"\nuid = \"1404376560\"\n",
        )
        .unwrap()
        .merchants
    }

    #[test]
    fn the_checks_before_any_call() {
        let merchants = merchants();
        let finish = br#"{"appid":"100023","sub_order_id":"42","action":"finish"}"#;
        let close = br#"{"appid":"100023","sub_order_id":"42","action":"close","reason":"gone"}"#;
        /// (body, attempts sealed in it, max_attempts) -> Ok(attempts made) or the cause.
        type Row<'a> = (&'a [u8], u32, u32, Result<u32, DeadCause>);
        let rows: [Row; 8] = [
            (finish, 0, 8, Ok(0)),
            (close, 7, 8, Ok(7)),
            (finish, 8, 8, Err(DeadCause::Exhausted)),
            // The limit lowered while the command waited in a delay queue.
            (finish, 6, 3, Err(DeadCause::Exhausted)),
            (b"not json", 0, 8, Err(DeadCause::Malformed)),
            (
                br#"{"appid":"100023","sub_order_id":"42","action":"close"}"#,
                0,
                8,
                Err(DeadCause::Malformed),
            ),
            (
                br#"{"appid":"999","sub_order_id":"42","action":"finish"}"#,
                0,
                8,
                Err(DeadCause::UnknownMerchant),
            ),
            (
                br#"{"appid":"100023","sub_order_id":"42","action":"refund"}"#,
                0,
                8,
                Err(DeadCause::Malformed),
            ),
        ];
        for (body, sealed, max, expected) in rows {
            let shown = String::from_utf8_lossy(body);
            match (admit(body, &merchants, max, |_| sealed), expected) {
                (Ok((command, merchant, before)), Ok(made)) => {
                    assert_eq!(before, made, "{shown}");
                    assert_eq!(merchant.appid().as_str(), "100023");
                    assert_eq!(command.sub_order_id().as_str(), "42");
                }
                (
                    Err(Next::Dead {
                        cause,
                        attempts,
                        command,
                        ..
                    }),
                    Err(expected),
                ) => {
                    assert_eq!(cause, expected, "{shown}");
                    // A body that is no command has no command to report in an outcome.
                    assert_eq!(command.is_none(), cause == DeadCause::Malformed, "{shown}");
                    let counted = if cause == DeadCause::Exhausted {
                        sealed
                    } else {
                        0
                    };
                    assert_eq!(attempts, counted, "{shown}");
                }
                (got, expected) => panic!("{shown}: expected {expected:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn a_close_goes_through_the_table_as_a_finish_does() {
        let close = || {
            Command::new(
                "100023",
                "42",
                Verdict::Close {
                    reason: "out of stock".into(),
                },
            )
        };
        let done = next_after(8, close(), 2, CallOutcome::Succeeded { code: 70103 });
        assert_eq!(
            done,
            Next::Succeeded {
                command: close(),
                attempts: 2,
                code: 70103
            }
        );
        match next_after(8, close(), 2, transient(Some(10002))) {
            Next::Retry { command, step, .. } => {
                assert_eq!(command, close());
                assert_eq!(step, 2);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_parked_command_keeps_its_count_and_waits_in_an_existing_queue() {
        let error = KeeperError::Stopped;
        for before in [0, 3] {
            match parked(finish(), before, &error) {
                Next::Retry { attempts, step, .. } => {
                    assert_eq!(attempts, before);
                    assert!(step >= 1);
                }
                other => panic!("{other:?}"),
            }
        }
    }
}
