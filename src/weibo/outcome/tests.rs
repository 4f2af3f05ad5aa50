use super::*;
use crate::settings::Settings;

fn defaults() -> CodeTable {
    let settings = Settings::load(None, Vec::<(String, String)>::new()).unwrap();
    settings.weibo.codes
}

/// The e-commerce envelope.
fn ecommerce(code: i64) -> Vec<u8> {
    format!(r#"{{"code":{code},"msg":"m","data":{{}}}}"#).into_bytes()
}

/// Weibo's API gateway error, code as a string, as the real gateway sends it.
fn gateway(code: i64) -> Vec<u8> {
    format!(r#"{{"request":"/2/proxy/eshop/open/order/retailerFinishSub","error_code":"{code}","error":"m"}}"#)
        .into_bytes()
}

/// The OAuth2 error, code as a number.
fn oauth(code: i64) -> Vec<u8> {
    format!(r#"{{"error":"invalid_request","error_code":{code},"error_description":"m"}}"#)
        .into_bytes()
}

#[test]
fn every_default_row_in_every_envelope_at_any_4xx_or_200() {
    use Action::*;
    let table = defaults();
    let statuses = [
        StatusCode::OK,
        StatusCode::BAD_REQUEST,
        StatusCode::UNAUTHORIZED,
        StatusCode::FORBIDDEN,
        StatusCode::TOO_MANY_REQUESTS,
    ];
    for envelope in [ecommerce, gateway, oauth] {
        for status in statuses {
            for action in [Finish, Close] {
                let c = |code| classify(action, status, &envelope(code), &table);
                for code in [21327, 21332, 21314, 21315, 21316, 21317, 21319] {
                    assert_eq!(c(code), CallOutcome::TokenRejected { code }, "{status}");
                }
                for code in [10001, 10002, 10003, 10022, 10023, 10024, 21331] {
                    assert!(
                        matches!(c(code), CallOutcome::Transient { code: Some(x), .. } if x == code),
                        "{code} at {status}"
                    );
                }
                for code in [40001, 40002, 70101, 70104, 12345] {
                    assert_eq!(
                        c(code),
                        CallOutcome::Permanent {
                            code: Some(code),
                            msg: "m".into()
                        },
                        "{code} at {status}"
                    );
                }
            }
            let c = |action, code| classify(action, status, &envelope(code), &table);
            assert_eq!(c(Finish, 70102), CallOutcome::Succeeded { code: 70102 });
            assert_eq!(c(Close, 70103), CallOutcome::Succeeded { code: 70103 });
            assert!(matches!(
                c(Close, 70102),
                CallOutcome::Permanent {
                    code: Some(70102),
                    ..
                }
            ));
            assert!(matches!(
                c(Finish, 70103),
                CallOutcome::Permanent {
                    code: Some(70103),
                    ..
                }
            ));
        }
    }
    assert_eq!(
        classify(Finish, StatusCode::OK, &ecommerce(0), &table),
        CallOutcome::Succeeded { code: 0 }
    );
}

#[test]
fn the_table_is_whatever_the_configuration_says() {
    let table = Settings::from_toml(
        "[weibo.codes]\nalready_finished = [70102, 88888]\ntransient = [77777]\n",
    )
    .unwrap()
    .weibo
    .codes;
    let ok = StatusCode::OK;
    assert_eq!(
        classify(Action::Finish, ok, &ecommerce(88888), &table),
        CallOutcome::Succeeded { code: 88888 }
    );
    assert!(matches!(
        classify(Action::Finish, ok, &ecommerce(77777), &table),
        CallOutcome::Transient {
            code: Some(77777),
            ..
        }
    ));
    // The list replaced the default: 10002 is no longer transient.
    assert!(matches!(
        classify(
            Action::Finish,
            StatusCode::FORBIDDEN,
            &gateway(10002),
            &table
        ),
        CallOutcome::Permanent {
            code: Some(10002),
            ..
        }
    ));
}

#[test]
fn server_errors_redirects_and_transport_pages_are_transient() {
    let table = defaults();
    let s = StatusCode::BAD_GATEWAY;
    assert!(matches!(
        classify(Action::Finish, s, b"<html>bad gateway</html>", &table),
        CallOutcome::Transient { code: None, .. }
    ));
    assert!(matches!(
        classify(Action::Finish, s, &ecommerce(70101), &table),
        CallOutcome::Transient {
            code: Some(70101),
            ..
        }
    ));
    assert!(matches!(
        classify(
            Action::Finish,
            StatusCode::TEMPORARY_REDIRECT,
            &ecommerce(0),
            &table
        ),
        CallOutcome::Transient { code: None, .. }
    ));
    assert!(matches!(
        classify(Action::Close, StatusCode::TOO_MANY_REQUESTS, b"", &table),
        CallOutcome::Transient { code: None, .. }
    ));
}

#[test]
fn unreadable_and_odd_answers() {
    let table = defaults();
    let ok = StatusCode::OK;
    for body in [
        &b"not json"[..],
        b"{}",
        br#"{"code":"abc"}"#,
        br#"{"error":"no code"}"#,
        b"[1]",
    ] {
        assert!(
            matches!(
                classify(Action::Close, ok, body, &table),
                CallOutcome::Permanent { code: None, .. }
            ),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    assert_eq!(
        classify(
            Action::Close,
            ok,
            br#"{"code":"0","msg":"success"}"#,
            &table
        ),
        CallOutcome::Succeeded { code: 0 }
    );
    // Code 0 at a 4xx is no success.
    assert!(matches!(
        classify(
            Action::Close,
            StatusCode::BAD_REQUEST,
            &ecommerce(0),
            &table
        ),
        CallOutcome::Permanent { code: Some(0), .. }
    ));
    assert_eq!(
        read_code(br#"{"error":"expired_token","error_code":" 21327 ","request":"/x"}"#),
        Some(PlatformError {
            code: 21327,
            msg: "expired_token".into()
        })
    );
}

#[test]
fn an_outcome_reads_as_one_line_with_the_platforms_text_escaped_and_cut() {
    let permanent = CallOutcome::Permanent {
        code: Some(70101),
        msg: "no such sub order".into(),
    };
    assert_eq!(
        permanent.to_string(),
        "permanent failure (code 70101): no such sub order"
    );
    let hostile = CallOutcome::Transient {
        code: Some(10023),
        reason: format!(
            "code 10023: busy\n2026-01-01 INFO forged\u{1b}[31m{}",
            "x".repeat(500)
        ),
    };
    let line = hostile.to_string();
    assert!(
        line.starts_with("transient failure: code 10023: busy\\n2026-01-01 INFO forged\\u{1b}[31m"),
        "{line}"
    );
    assert!(!line.contains('\n') && !line.contains('\u{1b}'), "{line}");
    assert!(line.ends_with('…') && line.chars().count() < 260, "{line}");
    assert_eq!(
        CallOutcome::Succeeded { code: 70102 }.to_string(),
        "succeeded (code 70102)"
    );
}
