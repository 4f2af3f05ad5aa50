//! One gateway request on the platform, retried within `gateway.deadline_ms`: a rejected
//! token is replaced once (through the keeper, single-flight) and the call repeated; a code
//! the platform answers before acting is retried for reads and writes alike; a time-out, a
//! lost connection or an answer that leaves the fate open is retried for reads only, and a
//! write gets `unknown`.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::clock::Later;

use super::{Gateway, GatewayError};
use crate::permits::Taker;
use crate::settings::{InterfaceSpec, Merchant};
use crate::weibo::{CallOutcome, InterfaceCall, Reply, Token};

/// First pause between two attempts; doubles, up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(100);
/// Longest pause between two attempts.
const MAX_PAUSE: Duration = Duration::from_secs(1);

/// A call the platform answered with success.
#[derive(Debug)]
pub struct Done {
    /// Calls made.
    pub attempts: u32,
    /// 0.
    pub code: i64,
    /// The platform's message.
    pub msg: Option<String>,
    /// The platform's data.
    pub data: serde_json::Value,
}

impl Gateway {
    /// Calls `interface` for `merchant` until success, a final answer or `deadline`.
    pub(super) async fn perform(
        &self,
        merchant: &Merchant,
        interface: &str,
        spec: InterfaceSpec,
        params: &[(String, String)],
        deadline: Instant,
    ) -> Result<Done, GatewayError> {
        let call = InterfaceCall {
            interface,
            method: spec.method,
            params,
        };
        let (mut attempts, mut refreshed, mut pause) = (0u32, false, FIRST_PAUSE);
        loop {
            let (reply, token) = match self.attempt(merchant, call, deadline, &mut attempts).await {
                Ok(replied) => replied,
                Err(Cut::Waited(msg)) => {
                    return Err(GatewayError::Transient {
                        attempts,
                        code: None,
                        msg,
                    })
                }
                Err(Cut::InFlight) if spec.writes => {
                    return Err(GatewayError::Unknown {
                        attempts,
                        msg: "the deadline passed while the platform had the call: it may have happened; read back before repeating".into(),
                    })
                }
                Err(Cut::InFlight) => {
                    return Err(GatewayError::Transient {
                        attempts,
                        code: None,
                        msg: "no answer within the deadline".into(),
                    })
                }
            };
            let Reply {
                outcome,
                not_acted,
                msg,
                data,
            } = reply;
            let last = match outcome {
                CallOutcome::Succeeded { code } => {
                    return Ok(Done {
                        attempts,
                        code,
                        msg,
                        data,
                    })
                }
                CallOutcome::Permanent { code, msg } => {
                    return Err(GatewayError::Permanent {
                        attempts,
                        code,
                        msg,
                        data,
                    })
                }
                CallOutcome::TokenRejected { code } if !refreshed => {
                    refreshed = true;
                    // Only the keeper replaces it, once, however many calls report it; a
                    // token already replaced is left alone.
                    let _ = self.keeper.invalidate(merchant.appid(), &token);
                    tracing::info!(code, "access_token rejected; repeating with the next one");
                    continue;
                }
                CallOutcome::TokenRejected { code } => {
                    (Some(code), "access_token rejected twice".to_owned())
                }
                CallOutcome::Transient { code, reason } => (code, reason),
            };
            if spec.writes && !not_acted {
                return Err(GatewayError::Unknown {
                    attempts,
                    msg: format!(
                        "{}: the write may have happened; read back before repeating",
                        crate::telemetry::clip(&last.1, 200)
                    ),
                });
            }
            if Instant::now().later(pause) >= deadline {
                return Err(GatewayError::Transient {
                    attempts,
                    code: last.0,
                    msg: crate::telemetry::clip(&last.1, 200),
                });
            }
            tokio::time::sleep(pause).await;
            pause = pause.saturating_mul(2).min(MAX_PAUSE);
        }
    }

    /// One call: a token, a permit, then the platform, each within the deadline.
    async fn attempt(
        &self,
        merchant: &Merchant,
        call: InterfaceCall<'_>,
        deadline: Instant,
        attempts: &mut u32,
    ) -> Result<(Reply, Arc<Token>), Cut> {
        let appid = merchant.appid();
        let token = match tokio::time::timeout_at(deadline, self.keeper.get(appid)).await {
            Ok(Ok(token)) => token,
            Ok(Err(error)) => return Err(Cut::Waited(error.to_string())),
            Err(_) => return Err(Cut::Waited("no access_token within the deadline".into())),
        };
        let wait = deadline.saturating_duration_since(Instant::now());
        self.permits
            .take_within(Taker::Gateway, wait)
            .await
            .map_err(|_| Cut::Waited("rate limited: no call permit within the deadline".into()))?;
        *attempts += 1;
        let reply = tokio::time::timeout_at(deadline, self.client.call(merchant, call, &token))
            .await
            .map_err(|_| Cut::InFlight)?;
        Ok((reply, token))
    }
}

/// Why an attempt ended without a reply.
enum Cut {
    /// Before sending: no token or no permit in time.
    Waited(String),
    /// After sending: the deadline passed with the call in flight.
    InFlight,
}
