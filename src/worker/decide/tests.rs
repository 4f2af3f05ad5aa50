use super::*;
use crate::settings::Settings;

fn merchants() -> Merchants {
    Settings::from_toml(
        "[[merchants]]\nappid = \"100023\"\nsign_key = \"sign-key-0123456789abcdef\"\nclient_id = \"772915\"\nclient_secret = \"client-secret-0123456789\"\nuid = \"1404376560\"\n",
    )
    .unwrap()
    .merchants
}

fn finish() -> Command {
    Command::new("100023", "42", Verdict::Finish)
}

fn close() -> Command {
    Command::new(
        "100023",
        "42",
        Verdict::Close {
            reason: "out of stock".into(),
        },
    )
}

fn transient(code: Option<i64>) -> CallOutcome {
    CallOutcome::Transient {
        code,
        reason: "HTTP 503".into(),
    }
}

/// The `number`-th attempt of at most `max`.
fn attempt(number: u32, max: u32) -> Attempt {
    Attempt::after(number - 1, max).unwrap()
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
    let merchants = merchants();
    let merchant = merchants.get("100023").unwrap();
    let permanent = Permanent {
        code: Some(40001),
        msg: "bad sign".into(),
    };
    for (max, number, outcome, expected) in [
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
        let admitted = Admitted {
            command: finish(),
            merchant,
        };
        let next = next_after(admitted, attempt(number, max), outcome.clone());
        let ok = match (&expected, &next) {
            (
                Succeeds(a, c),
                Next::Succeeded {
                    attempts,
                    code,
                    command,
                    ..
                },
            ) => (a, c) == (attempts, code) && *command == finish(),
            (
                Retries(a, c),
                Next::Retry {
                    attempts,
                    code,
                    admitted,
                    ..
                },
            ) => {
                (a, c) == (attempts, code)
                    && admitted.command == finish()
                    && std::ptr::eq(admitted.merchant, merchant)
            }
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
            "{outcome:?} on attempt {number}/{max}: expected {expected:?}, got {next:?}"
        );
    }
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
            (Ok((admitted, attempt)), Ok(made)) => {
                assert_eq!(attempt.number(), made + 1, "{shown}");
                // The merchant travels with the command: settling needs no second look-up.
                assert_eq!(admitted.merchant.appid().as_str(), "100023");
                assert_eq!(admitted.command.sub_order_id().unwrap().as_str(), "42");
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
    let merchants = merchants();
    let admitted = || Admitted {
        command: close(),
        merchant: merchants.get("100023").unwrap(),
    };
    let done = next_after(
        admitted(),
        attempt(2, 8),
        CallOutcome::Succeeded { code: 70103 },
    );
    assert_eq!(
        done,
        Next::Succeeded {
            command: close(),
            attempts: 2,
            code: 70103,
            data: None,
        }
    );
    match next_after(admitted(), attempt(2, 8), transient(Some(10002))) {
        Next::Retry {
            admitted, attempts, ..
        } => {
            assert_eq!(admitted.command, close());
            assert_eq!(attempts, 2);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_parked_command_keeps_its_count() {
    let merchants = merchants();
    let error = crate::keeper::KeeperError::Stopped;
    for before in [0, 3] {
        let admitted = Admitted {
            command: finish(),
            merchant: merchants.get("100023").unwrap(),
        };
        match parked(admitted, Attempt::after(before, 8).unwrap(), &error) {
            Next::Retry { attempts, code, .. } => {
                assert_eq!((attempts, code), (before, None));
            }
            other => panic!("{other:?}"),
        }
    }
}
