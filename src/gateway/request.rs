//! What a gateway request asks, read and checked before anything is sent: the body within its
//! size and time, JSON of the contract's shape, parameters that are the interface's own.

use std::time::Duration;

use actix_web::web::{BytesMut, Payload};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::GatewayError;
use crate::ids::{AppId, StringOrNumber};
use crate::weibo::COMMON_PARAMS;

/// Longest parameter name accepted.
const MAX_NAME_BYTES: usize = 64;

/// A checked request: the merchant and the parameters as the platform will get them.
#[derive(Debug, PartialEq, Eq)]
pub struct CallRequest {
    /// The merchant to call for.
    pub appid: AppId,
    /// The interface's parameters as text (objects and arrays as their JSON text).
    pub params: Vec<(String, String)>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    appid: StringOrNumber,
    #[serde(default)]
    params: Map<String, Value>,
}

/// Reads the body: at most `max` bytes (413 beyond, as soon as the header or the bytes say
/// so), within `timeout` (408 after: a body without end holds nothing for long).
pub async fn read_body(
    mut payload: Payload,
    length: Option<usize>,
    max: usize,
    timeout: Duration,
) -> Result<BytesMut, GatewayError> {
    if length.is_some_and(|n| n > max) {
        return Err(GatewayError::TooLarge(max));
    }
    let read = async {
        let mut body = BytesMut::new();
        while let Some(chunk) = payload.next().await {
            let chunk =
                chunk.map_err(|_| GatewayError::BadRequest("the body could not be read".into()))?;
            if body.len().saturating_add(chunk.len()) > max {
                return Err(GatewayError::TooLarge(max));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    };
    tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| GatewayError::BodyTimeout)?
}

/// Parses and checks a body: `{"appid":..,"params":{..}}`, at most `max_params` parameters,
/// none of the relay's own, names of letters, digits and `_-.[]`, values that are no null.
pub fn parse(body: &[u8], max_params: usize) -> Result<CallRequest, GatewayError> {
    let bad = GatewayError::BadRequest;
    let raw: Raw = serde_json::from_slice(body).map_err(|e| {
        bad(format!(
            "malformed body: {}",
            crate::telemetry::clip(&e.to_string(), 200)
        ))
    })?;
    let appid = AppId::parse(&raw.appid.into_text()).ok_or_else(|| bad(AppId::RULE.into()))?;
    let params = params_text(raw.params, max_params)?;
    Ok(CallRequest { appid, params })
}

/// The parameters as the platform gets them: at most `max_params`, none of the relay's own,
/// names of letters, digits and `_-.[]`, values as text (objects and arrays as their JSON
/// text), no null. Shared by the gateway and the worker's call commands.
pub fn params_text(
    given: Map<String, Value>,
    max_params: usize,
) -> Result<Vec<(String, String)>, GatewayError> {
    let bad = GatewayError::BadRequest;
    if given.len() > max_params {
        return Err(bad(format!("more than {max_params} params")));
    }
    let mut params = Vec::with_capacity(given.len());
    for (name, value) in given {
        if COMMON_PARAMS.contains(&name.as_str()) {
            return Err(bad(format!(
                "param {name} is the relay's own: it adds appid, timestamp, sign_type, sign and access_token itself"
            )));
        }
        let fit = |b: u8| b.is_ascii_alphanumeric() || b"_-.[]".contains(&b);
        if name.is_empty() || name.len() > MAX_NAME_BYTES || !name.bytes().all(fit) {
            return Err(bad(format!(
                "param {} is no parameter name (1 to {MAX_NAME_BYTES} of letters, digits and _-.[])",
                crate::telemetry::shown(&crate::telemetry::clip(&name, 64))
            )));
        }
        let text = match value {
            Value::Null => return Err(bad(format!("param {name} is null"))),
            Value::String(s) => s,
            // Objects and arrays as their JSON text: the platform takes strings.
            other => other.to_string(),
        };
        params.push((name, text));
    }
    Ok(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_become_text_and_nested_ones_their_json() {
        let got = parse(
            br#"{"appid":100023,"params":{"goods_id":"371965","stock":12,"on":true,"skus":[{"sku_id":"1"}]}}"#,
            10,
        )
        .unwrap();
        assert_eq!(got.appid.as_str(), "100023");
        assert_eq!(
            got.params,
            vec![
                ("goods_id".into(), "371965".into()),
                ("on".into(), "true".into()),
                ("skus".into(), r#"[{"sku_id":"1"}]"#.into()),
                ("stock".into(), "12".into()),
            ]
        );
    }

    #[test]
    fn hostile_bodies_are_refused_with_a_short_reason() {
        let many = format!(
            r#"{{"appid":"1","params":{{{}}}}}"#,
            (0..11)
                .map(|i| format!(r#""p{i}":"v""#))
                .collect::<Vec<_>>()
                .join(",")
        );
        for (body, why) in [
            (&b"not json"[..], "malformed"),
            (br#"{"params":{}}"#, "malformed"),
            (br#"{"appid":"1","params":{"sign":"x"}}"#, "relay's own"),
            (
                br#"{"appid":"1","params":{"access_token":"x"}}"#,
                "relay's own",
            ),
            (br#"{"appid":"1","params":{"appid":"2"}}"#, "relay's own"),
            (
                br#"{"appid":"1","params":{"a=b&c":"x"}}"#,
                "no parameter name",
            ),
            (br#"{"appid":"1","params":{"a":null}}"#, "null"),
            (br#"{"appid":"1","extra":1}"#, "malformed"),
            (many.as_bytes(), "more than 10"),
        ] {
            match parse(body, 10) {
                Err(GatewayError::BadRequest(reason)) => {
                    assert!(reason.contains(why), "{reason}");
                    assert!(reason.len() < 300 && !reason.contains('\n'));
                }
                other => panic!("{}: {other:?}", String::from_utf8_lossy(body)),
            }
        }
    }
}
