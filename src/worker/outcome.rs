//! What the worker publishes when a command is settled for good (contract, AMQP): an outcome
//! on the events exchange, under the routing key that says which.

use serde::Serialize;

use super::command::Command;

/// How a command ended: the routing key (and AMQP `type`) of its outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The platform has it (or already had it).
    Succeeded,
    /// Dead-lettered: the platform refused it, or every attempt failed.
    Failed,
}

impl Outcome {
    /// `fulfilment.succeeded` or `fulfilment.failed`.
    pub fn routing_key(self) -> &'static str {
        match self {
            Self::Succeeded => "fulfilment.succeeded",
            Self::Failed => "fulfilment.failed",
        }
    }

    /// The outcome's `message_id`: the same for every settling of one command with one result
    /// (a redelivery after a crash publishes it again), so consumers can dedupe on it as on
    /// events. sha256 over appid, sub order (a call's interface and id instead), action and
    /// routing key, as 32 hex digits.
    pub fn message_id(self, command: &Command) -> String {
        use sha2::{Digest, Sha256};
        let mut hash = Sha256::new();
        let subject = match (command.sub_order_id(), command.verdict()) {
            (Some(id), _) => id.as_str().to_owned(),
            (None, super::Verdict::Call(call)) => format!("{} {}", call.interface, call.id),
            (None, _) => String::new(),
        };
        for part in [
            "outcome",
            command.appid().as_str(),
            &subject,
            command.action_name(),
            self.routing_key(),
        ] {
            hash.update(part.as_bytes());
            hash.update(b"\n");
        }
        hex::encode(&hash.finalize()[..16])
    }
}

/// An outcome's body: `{"command":{...},"attempts":N,"code":<code or null>,"msg":".."}`.
#[derive(Debug, Serialize)]
pub struct OutcomeBody<'a> {
    /// The command, in its queue shape.
    pub command: &'a Command,
    /// Attempts made on the platform.
    pub attempts: u32,
    /// The platform's code, when an answer carried one.
    pub code: Option<i64>,
    /// `success`, or why it failed.
    pub msg: &'a str,
    /// A call command's answer: the platform's `data`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<&'a serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outcome_is_the_contracts_shape_and_id() {
        let command = Command::parse(
            br#"{"appid":"100023","sub_order_id":"42","action":"close","reason":"gone"}"#,
        )
        .unwrap();
        let body = OutcomeBody {
            command: &command,
            attempts: 2,
            code: None,
            msg: "platform refused: x",
            data: None,
        };
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            serde_json::json!({
                "command": {"appid": "100023", "sub_order_id": "42", "action": "close", "reason": "gone"},
                "attempts": 2, "code": null, "msg": "platform refused: x"
            })
        );
        use sha2::{Digest, Sha256};
        let expected =
            hex::encode(&Sha256::digest(b"outcome\n100023\n42\nclose\nfulfilment.failed\n")[..16]);
        assert_eq!(Outcome::Failed.message_id(&command), expected);
        assert_eq!(Outcome::Succeeded.routing_key(), "fulfilment.succeeded");
    }
}
