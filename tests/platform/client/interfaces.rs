//! Any catalogue interface (`WeiboClient::call`): GET in the query, POST in a form, the
//! common parameters added and signed in the PHP form, the token sent and never signed, the
//! platform's data handed back.

use super::support::*;
use crate::support::{Platform, APPID};
use weibo_relay::settings::PlatformMethod;
use weibo_relay::weibo::{CallOutcome, InterfaceCall};

#[tokio::test]
async fn a_read_and_a_write_are_sent_by_their_method_signed_and_answered_with_data() {
    let p = Platform::start(HOUR).await;
    let token = p.client.fetch_token(p.merchant()).await.unwrap();
    let params = vec![
        ("goods_id".to_owned(), "371965".to_owned()),
        ("sku_id".to_owned(), " 3924 ".to_owned()),
        ("stock".to_owned(), "12".to_owned()),
        ("empty".to_owned(), String::new()),
    ];
    let write = InterfaceCall {
        interface: "goods/setGoodsStockSkuid",
        method: PlatformMethod::Post,
        params: &params,
    };
    let reply = p.client.call(p.merchant(), write, &token).await;
    assert_eq!(reply.outcome, CallOutcome::Succeeded { code: 0 });
    assert_eq!(reply.data["stock"], 12);
    let read_params = vec![("goods_id".to_owned(), "371965".to_owned())];
    let read = InterfaceCall {
        interface: "goods/getGoodsInfo",
        method: PlatformMethod::Get,
        params: &read_params,
    };
    let reply = p.client.call(p.merchant(), read, &token).await;
    assert_eq!(reply.outcome, CallOutcome::Succeeded { code: 0 });
    assert_eq!(reply.data["skus"][0]["sku_id"], " 3924 ");

    let requests = p.requests().await;
    let n = requests.len();
    let common = ["access_token", "appid", "sign", "sign_type", "timestamp"];
    let mut write_keys = common.to_vec();
    write_keys.extend(["goods_id", "sku_id", "stock", "empty"]);
    assert_signed(&requests[n - 2], "setGoodsStockSkuid", &write_keys);
    let mut read_keys = common.to_vec();
    read_keys.push("goods_id");
    assert_signed(&requests[n - 1], "getGoodsInfo", &read_keys);
    assert_eq!(requests[n - 1]["params"]["appid"], APPID);

    // The wrong method is refused by the platform, as a permanent answer.
    let wrong = InterfaceCall {
        method: PlatformMethod::Post,
        ..read
    };
    let reply = p.client.call(p.merchant(), wrong, &token).await;
    assert!(
        matches!(
            reply.outcome,
            CallOutcome::Permanent {
                code: Some(40005),
                ..
            }
        ),
        "{reply:?}"
    );
    assert!(reply.not_acted);
}
