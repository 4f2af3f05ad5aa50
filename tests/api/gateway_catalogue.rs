//! Every row of the catalogue through both doors (HTTP and commands) against the sandbox, which checks method,
//! signature and token on each: exactly one call each, and the state model answering.

use serde_json::{json, Value};

use crate::support::gateway::*;
use crate::support::*;

/// The interface's parameters for the sandbox's model (an echo where it has none).
fn params_for(interface: &str, orders: &[String]) -> Value {
    match interface {
        "order/retailerFinishSub" | "order/retailerGetSub" | "order/retailerSearchSub" => {
            json!({"sub_order_id": orders[0]})
        }
        "order/retailerCloseSub" => json!({"sub_order_id": orders[1], "reason": "out of stock"}),
        "order/retailerAddExpress" => {
            json!({"sub_order_id": orders[2], "express_company": "SF", "express_no": "SF123"})
        }
        "order/retailerGetSubList" => json!({
            "start_time": "2020-01-01 00:00:00", "end_time": "2099-01-01 00:00:00",
            "page": 1, "page_size": 10
        }),
        "goods/setGoodsStockSkuid" => json!({"goods_id": "371965", "sku_id": "3924", "stock": 12}),
        "goods/setGoodsPriceSkuid" => {
            json!({"goods_id": "371965", "sku_id": "3924", "price": "9.90"})
        }
        "goods/setGoodsStockPin" => json!({"pin": "P-1", "stock": 3}),
        "goods/setGoodsPricePin" => json!({"pin": "P-1", "price": "1.00"}),
        _ => json!({"goods_id": "371965"}),
    }
}

#[tokio::test]
async fn every_row_of_the_catalogue_is_called_once_with_its_method_signature_and_token() {
    let gw = GatewayRig::on(Harness::builder().settings(|s| {
        with_gateway(s);
        // The sweep would call retailerGetSubList too: counts here are the gateway's alone.
        s.reconcile.enabled = false;
    }))
    .await;
    let orders = gw.rig.create_orders(3).await;
    let mut interfaces: Vec<String> = gw
        .rig
        .app
        .settings
        .gateway
        .interfaces
        .keys()
        .cloned()
        .collect();
    assert_eq!(interfaces.len(), 37);
    // Stock and price first, so the goods read afterwards shows them.
    interfaces.sort_by_key(|i| !i.starts_with("goods/setGoods"));
    for interface in &interfaces {
        let body = json!({"appid": APPID, "params": params_for(interface, &orders)});
        let answer = gw.call(ALL_KEY, interface, body).await;
        let body = answer.assert(200, "success");
        assert_eq!(body["code"], 0, "{interface}: {body}");
        assert_eq!(body["relay"]["attempts"], 1, "{interface}: {body}");
    }
    let counters = gw.rig.counters().await;
    for interface in &interfaces {
        let name = interface.split_once('/').unwrap().1;
        assert_eq!(gw.received(name), 1, "{interface}");
        assert_eq!(counters["calls"][name], json!({"0": 1}), "{interface}");
    }
    // The model: the stock and price set above, the order finished, the shipment recorded.
    let goods = gw
        .call(
            ALL_KEY,
            "goods/getGoodsInfo",
            json!({"appid": APPID, "params": {"goods_id": "371965"}}),
        )
        .await
        .assert(200, "success");
    assert_eq!(
        goods["data"]["skus"],
        json!([{"sku_id": "3924", "stock": 12, "price": "9.90"}])
    );
    assert_eq!(gw.rig.order_state(&orders[0]).await, 301);
    assert_eq!(gw.rig.order_state(&orders[1]).await, 302);
    assert_eq!(
        gw.rig.sandbox.express(APPID, &orders[2]).unwrap()["express_no"],
        "SF123"
    );
}

#[tokio::test]
async fn nested_values_arrive_as_their_json_text_and_numbers_as_text() {
    let gw = gateway_rig().await;
    let sku_list = json!([{"sku_id": "3924", "stock": 1}, {"sku_id": "3925", "stock": 0}]);
    let body = json!({"appid": APPID, "params": {
        "goods_id": 371965, "sku_list": sku_list, "attrs": {"color": "红"}, "on_sale": true
    }});
    let answer = gw.call(ALL_KEY, "goods/setGoodsInfo", body).await;
    let echoed = &answer.assert(200, "success")["data"]["params"];
    assert_eq!(echoed["goods_id"], "371965");
    assert_eq!(echoed["on_sale"], "true");
    assert_eq!(echoed["appid"], APPID);
    let sent: Value = serde_json::from_str(echoed["sku_list"].as_str().unwrap()).unwrap();
    assert_eq!(sent, sku_list);
    assert_eq!(echoed["attrs"], r#"{"color":"红"}"#);
}

#[tokio::test]
async fn a_client_calls_only_its_interfaces_and_appids() {
    let gw = gateway_rig().await;
    let stock = json!({"appid": APPID, "params": {"goods_id": "1", "sku_id": "2", "stock": 5}});
    gw.call(STOCK_KEY, "goods/setGoodsStockSkuid", stock.clone())
        .await
        .assert(200, "success");
    let price = json!({"appid": APPID, "params": {"goods_id": "1", "sku_id": "2", "price": "1"}});
    gw.call(STOCK_KEY, "goods/setGoodsPriceSkuid", price)
        .await
        .assert(403, "refused");
    let other =
        json!({"appid": OTHER_APPID, "params": {"goods_id": "1", "sku_id": "2", "stock": 5}});
    gw.call(STOCK_KEY, "goods/setGoodsStockSkuid", other)
        .await
        .assert(403, "refused");
    // The `all` client may name any appid, but only a merchant of this relay.
    let stranger = json!({"appid": "999999", "params": {"goods_id": "1"}});
    gw.call(ALL_KEY, "goods/getGoodsInfo", stranger)
        .await
        .assert(403, "refused");
    assert_eq!(gw.received("setGoodsPriceSkuid"), 0);
    assert_eq!(gw.received("setGoodsStockSkuid"), 1);
}

/// The durable door too: every row as an `"action":"call"` command, each called once with
/// its method, signature and token (the sandbox checks all three), each outcome a success.
#[tokio::test]
async fn every_row_of_the_catalogue_is_called_once_through_the_durable_door() {
    let rig = Harness::builder()
        .settings(|s| s.reconcile.enabled = false)
        .rig()
        .await;
    let orders = rig.create_orders(3).await;
    let interfaces: Vec<String> = rig
        .app
        .settings
        .gateway
        .interfaces
        .keys()
        .cloned()
        .collect();
    assert_eq!(interfaces.len(), 37);
    for (i, interface) in interfaces.iter().enumerate() {
        rig.send(json!({
            "appid": APPID, "action": "call", "interface": interface,
            "params": params_for(interface, &orders), "id": format!("row-{i}")
        }))
        .await;
    }
    let outcomes = rig.outcomes(37).await;
    for (key, body) in &outcomes {
        assert_eq!(key, "fulfilment.succeeded", "{body}");
        assert_eq!(body["attempts"], 1, "{body}");
    }
    let counters = rig.counters().await;
    for interface in &interfaces {
        let name = interface.split_once('/').unwrap().1;
        assert_eq!(rig.sandbox.received(name), 1, "{interface}");
        assert_eq!(counters["calls"][name], json!({"0": 1}), "{interface}");
    }
}
