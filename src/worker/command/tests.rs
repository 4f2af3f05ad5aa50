use super::*;
use serde_json::Value;

#[test]
fn both_shapes_of_the_contract_parse_and_round_trip() {
    let finish = br#"{"appid":"100023","sub_order_id":"42","action":"finish"}"#;
    let c = Command::parse(finish).unwrap();
    assert_eq!(c.verdict(), &Verdict::Finish);
    assert_eq!(
        serde_json::to_value(&c).unwrap(),
        serde_json::from_slice::<Value>(finish).unwrap()
    );
    let close =
        br#"{"appid":"100023","sub_order_id":"42","action":"close","reason":"out of stock"}"#;
    let c = Command::parse(close).unwrap();
    assert_eq!(
        c.verdict(),
        &Verdict::Close {
            reason: "out of stock".into()
        }
    );
    assert_eq!(
        serde_json::to_value(&c).unwrap(),
        serde_json::from_slice::<Value>(close).unwrap()
    );
    let numeric =
        Command::parse(br#"{"appid":100023,"sub_order_id":366383890000352,"action":"finish"}"#)
            .unwrap();
    assert_eq!(numeric.sub_order_id().unwrap().as_str(), "366383890000352");
}

#[test]
fn a_call_command_parses_checks_its_params_and_round_trips() {
    let body = br#"{"appid":"100023","action":"call","interface":"goods/setGoodsStockSkuid","params":{"sku_id":"3924","stock":12,"skus":[1]},"id":"sync-1"}"#;
    let c = Command::parse(body).unwrap();
    let Verdict::Call(call) = c.verdict() else {
        panic!("{c:?}")
    };
    assert_eq!(call.interface, "goods/setGoodsStockSkuid");
    assert!(call.params.contains(&("stock".into(), "12".into())));
    assert!(call.params.contains(&("skus".into(), "[1]".into())));
    assert_eq!(c.sub_order_id(), None);
    assert_eq!(
        serde_json::to_value(&c).unwrap(),
        serde_json::from_slice::<Value>(body).unwrap()
    );
    for (bad, why) in [
        (
            r#"{"appid":"1","action":"call","interface":"goods/x","id":"1","params":{"sign":"s"}}"#,
            "relay's own",
        ),
        (
            r#"{"appid":"1","action":"call","interface":"../x","id":"1"}"#,
            "interface",
        ),
        (
            r#"{"appid":"1","action":"call","interface":"goods/x"}"#,
            "id",
        ),
    ] {
        let err = Command::parse(bad.as_bytes()).unwrap_err();
        assert!(err.contains(why), "{err}");
    }
}

#[test]
fn bad_commands_say_why() {
    for (body, why) in [
        (&b"not json"[..], "malformed command"),
        (br#"{"appid":"1","action":"finish"}"#, "sub_order_id"),
        (
            br#"{"appid":"1","sub_order_id":"2","action":"refund"}"#,
            "neither finish, close nor call",
        ),
        (
            br#"{"appid":"1","sub_order_id":"2","action":"close"}"#,
            "non-empty reason",
        ),
        (
            br#"{"appid":"","sub_order_id":"2","action":"finish"}"#,
            "appid",
        ),
        (
            br#"{"appid":"1\n2","sub_order_id":"2","action":"finish"}"#,
            "appid",
        ),
        (
            br#"{"appid":"1","sub_order_id":"2 3","action":"finish"}"#,
            "sub_order_id",
        ),
    ] {
        let err = Command::parse(body).unwrap_err();
        assert!(err.contains(why), "{err}");
    }
}

#[test]
fn hostile_commands_get_short_single_line_reasons() {
    let huge_action = format!(
        r#"{{"appid":"1","sub_order_id":"2","action":"{}\n{}"}}"#,
        "a".repeat(10_000),
        "b"
    );
    let huge_value = format!(r#"{{"appid":["{}\n"]}}"#, "x".repeat(50_000));
    for body in [
        huge_action.into_bytes(),
        huge_value.into_bytes(),
        vec![b'{'; 70_000],
        format!(
            r#"{{"appid":"1","sub_order_id":"2","action":"close","reason":"{}"}}"#,
            "r".repeat(1001)
        )
        .into_bytes(),
    ] {
        let err = Command::parse(&body).unwrap_err();
        assert!(err.len() < 400 && !err.contains('\n'), "{err}");
    }
}

#[test]
fn a_merchant_is_named_by_ref_uid_or_both_and_echoed_as_named() {
    let by_uid = Command::parse(
        br#"{"appid":"100023","uid":1404376560,"sub_order_id":"42","action":"finish"}"#,
    )
    .unwrap();
    let uid = crate::provider::domain::Uid::parse("1404376560").unwrap();
    assert_eq!(by_uid.merchant(), Some(&MerchantName::Uid(uid.clone())));
    assert_eq!(
        serde_json::to_value(&by_uid).unwrap(),
        serde_json::json!({"appid":"100023","uid":"1404376560","sub_order_id":"42","action":"finish"})
    );
    let both = Command::parse(
        br#"{"appid":"100023","merchant_ref":"shop-1","uid":"1404376560","sub_order_id":"42","action":"finish"}"#,
    )
    .unwrap();
    let shop = MerchantRef::parse("shop-1").unwrap();
    assert_eq!(both.merchant(), Some(&MerchantName::Both(shop, uid)));
    for bad in [
        r#""""#,
        r#""12a""#,
        r#""123456789012345678901""#,
        "-1",
        "1.5",
    ] {
        let body =
            format!(r#"{{"appid":"100023","uid":{bad},"sub_order_id":"42","action":"finish"}}"#);
        let error = Command::parse(body.as_bytes()).unwrap_err();
        assert!(error.starts_with("malformed command: "), "{bad}: {error}");
    }
}
