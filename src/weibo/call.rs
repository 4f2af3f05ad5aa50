//! Any capability interface (docs/platform-gateway.md): `{api_base}/<group>/<name>`, GET with
//! the parameters in the query or POST with a form body, the common parameters added and
//! signed as the order interfaces are (platform spec sections 2 and 4).

use secrecy::ExposeSecret;
use serde_json::Value;

use super::{classify, read_answer, read_code, redirect_refused, transport, Action, CallOutcome};
use super::{Token, WeiboClient};
use crate::settings::{CodeMeaning, Merchant, PlatformMethod};
use crate::signature;

/// The parameters the relay adds to every call; a caller may not give them.
pub const COMMON_PARAMS: [&str; 5] = ["appid", "timestamp", "sign_type", "sign", "access_token"];

/// One call of a catalogue interface.
#[derive(Debug, Clone, Copy)]
pub struct InterfaceCall<'a> {
    /// `<group>/<name>`, checked against the catalogue by the caller (it becomes the path).
    pub interface: &'a str,
    /// GET or POST.
    pub method: PlatformMethod,
    /// The interface's own parameters, as text, none of [`COMMON_PARAMS`].
    pub params: &'a [(String, String)],
}

/// What one call came to.
#[derive(Debug, Clone)]
pub struct Reply {
    /// What a caller does next.
    pub outcome: CallOutcome,
    /// True when the platform surely did not act on it: no connection was made, or it
    /// answered a code that refuses before acting (token, transient list) or any refusal.
    /// False after a time-out, a lost connection, a 5xx or a redirect: it may have.
    pub not_acted: bool,
    /// The answer's `msg` (or the gateway's `error`), when it carried one.
    pub msg: Option<String>,
    /// The answer's `data`, when it carried one.
    pub data: Value,
}

/// What a call without a token came to (`check`): the HTTP status and the platform's code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// The HTTP status.
    pub status: u16,
    /// The code of whichever envelope answered, if any.
    pub code: Option<i64>,
}

impl WeiboClient {
    /// `call` as the platform takes it: the interface's own parameters and the common ones,
    /// signed (PHP form) with `merchant`'s key; the access_token, when given, is sent and
    /// never signed. Parameters in the query for GET, a form body for POST.
    fn signed(
        &self,
        merchant: &Merchant,
        call: &InterfaceCall<'_>,
        token: Option<&Token>,
    ) -> reqwest::RequestBuilder {
        let timestamp = crate::clock::unix_secs().to_string();
        let mut params: Vec<(&str, &str)> = call
            .params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        params.extend([
            ("appid", merchant.appid().as_str()),
            ("timestamp", &timestamp),
            ("sign_type", "md5"),
        ]);
        let sign = signature::sign(params.iter().copied(), merchant.sign_key().expose_secret());
        params.push(("sign", &sign));
        if let Some(token) = token {
            params.push(("access_token", token.secret().expose_secret()));
        }
        let url = format!("{}/{}", self.api_base, call.interface);
        match call.method {
            PlatformMethod::Get => self.http.get(&url).query(&params),
            PlatformMethod::Post => self.http.post(&url).form(&params),
        }
    }

    /// Sends `call` signed but without an access_token (which `check` never takes: a new one
    /// would end the live one): the platform answers an interface that exists with a token
    /// error, and a missing one with its own refusal. The error names the host only.
    pub async fn probe(
        &self,
        merchant: &Merchant,
        call: InterfaceCall<'_>,
    ) -> Result<Probe, String> {
        let response = self
            .signed(merchant, &call, None)
            .send()
            .await
            .map_err(|e| crate::telemetry::error_chain(&e.without_url()))?;
        let status = response.status().as_u16();
        let body = read_answer(response)
            .await
            .map_err(|unread| unread.without_url().to_string())?;
        Ok(Probe {
            status,
            code: read_code(&body).map(|e| e.code),
        })
    }

    /// Calls `call.interface` for `merchant` with `token`.
    #[tracing::instrument(skip_all, fields(appid = %merchant.appid(), interface = call.interface))]
    pub async fn call(&self, merchant: &Merchant, call: InterfaceCall<'_>, token: &Token) -> Reply {
        let request = self.signed(merchant, &call, Some(token));
        let reply = match request.send().await {
            Ok(response) if response.status().is_redirection() => Reply {
                outcome: CallOutcome::Transient {
                    code: None,
                    reason: redirect_refused(&response),
                },
                not_acted: false,
                msg: None,
                data: Value::Null,
            },
            Ok(response) => {
                let status = response.status();
                match read_answer(response).await {
                    Ok(body) => self.answered(status, &body),
                    Err(unread) => Reply {
                        outcome: unread.without_url().into_outcome(),
                        not_acted: false,
                        msg: None,
                        data: Value::Null,
                    },
                }
            }
            // The query may carry the token: keep the URL out of the reason.
            Err(e) => Reply {
                not_acted: e.is_connect(),
                outcome: transport(&e.without_url()),
                msg: None,
                data: Value::Null,
            },
        };
        tracing::debug!(outcome = %reply.outcome, "platform answered");
        reply
    }

    fn answered(&self, status: reqwest::StatusCode, body: &[u8]) -> Reply {
        // Only finish and close know codes meaning "already done": any other interface
        // reads them as the refusals they are, as the order list does.
        let outcome = classify(Action::List, status, body, &self.codes);
        let read = read_code(body);
        let before_acting = read
            .as_ref()
            .and_then(|e| self.codes.meaning(e.code))
            .is_some_and(|m| matches!(m, CodeMeaning::Transient | CodeMeaning::TokenRejected));
        let not_acted = match &outcome {
            CallOutcome::Succeeded { .. } => false,
            CallOutcome::Permanent { .. } => !status.is_server_error(),
            CallOutcome::TokenRejected { .. } => true,
            CallOutcome::Transient { .. } => before_acting && !status.is_server_error(),
        };
        let data = serde_json::from_slice::<serde_json::Map<String, Value>>(body)
            .ok()
            .and_then(|mut m| m.remove("data"))
            .unwrap_or(Value::Null);
        Reply {
            outcome,
            not_acted,
            msg: read.map(|e| e.msg),
            data,
        }
    }
}
