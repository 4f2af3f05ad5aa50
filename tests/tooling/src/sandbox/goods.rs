//! The sandbox's small state model for the capability interfaces beyond the order ones: goods
//! stock and price by SKU id or PIN, sub order search, express.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{json, Value};

use super::orders::OrderStore;
use super::platform::BAD_PARAMETER;

/// A refusal: code and message.
type Refusal = (i64, String);

/// One SKU's stock and price.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Sku {
    /// Units in stock.
    pub stock: i64,
    /// Price as the caller wrote it.
    pub price: String,
}

/// Goods by merchant, goods id and SKU id; PINs of their own; shipments by sub order.
#[derive(Debug, Default)]
pub struct GoodsStore {
    skus: BTreeMap<(String, String, String), Sku>,
    pins: BTreeMap<(String, String), Sku>,
    express: BTreeMap<(String, String), Value>,
}

fn get<'a>(params: &'a BTreeMap<String, String>, key: &str) -> Result<&'a str, Refusal> {
    params
        .get(key)
        .map(String::as_str)
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| (BAD_PARAMETER, format!("missing parameter {key}")))
}

fn stock(params: &BTreeMap<String, String>) -> Result<i64, Refusal> {
    get(params, "stock")?
        .parse()
        .ok()
        .filter(|n| *n >= 0)
        .ok_or_else(|| {
            (
                BAD_PARAMETER,
                "stock must be a whole number, 0 or more".into(),
            )
        })
}

impl GoodsStore {
    /// Answers `interface` when the model covers it; `None` for the interfaces it only echoes.
    pub fn answer(
        &mut self,
        orders: &OrderStore,
        appid: &str,
        interface: &str,
        params: &BTreeMap<String, String>,
    ) -> Option<Result<Value, Refusal>> {
        let a = appid.to_owned();
        let answer = match interface {
            "goods/setGoodsStockSkuid" | "goods/setGoodsPriceSkuid" => (|| {
                let (goods, sku) = (get(params, "goods_id")?, get(params, "sku_id")?);
                let entry = self
                    .skus
                    .entry((a.clone(), goods.into(), sku.into()))
                    .or_default();
                if interface.contains("Stock") {
                    entry.stock = stock(params)?;
                } else {
                    entry.price = get(params, "price")?.into();
                }
                Ok(
                    json!({"goods_id": goods, "sku_id": sku, "stock": entry.stock, "price": entry.price}),
                )
            })(),
            "goods/setGoodsStockPin" | "goods/setGoodsPricePin" => (|| {
                let pin = get(params, "pin")?;
                let entry = self.pins.entry((a.clone(), pin.into())).or_default();
                if interface.contains("Stock") {
                    entry.stock = stock(params)?;
                } else {
                    entry.price = get(params, "price")?.into();
                }
                Ok(json!({"pin": pin, "stock": entry.stock, "price": entry.price}))
            })(),
            "goods/getGoodsInfo" => (|| {
                let goods = get(params, "goods_id")?;
                let skus: Vec<Value> = self
                    .skus
                    .iter()
                    .filter(|((ap, g, _), _)| *ap == a && g == goods)
                    .map(|((_, _, sku), s)| json!({"sku_id": sku, "stock": s.stock, "price": s.price}))
                    .collect();
                Ok(json!({"goods_id": goods, "skus": skus}))
            })(),
            "order/retailerSearchSub" => {
                let wanted = params.get("sub_order_id");
                let state = params.get("state_code");
                let list: Vec<Value> = orders
                    .of(appid)
                    .filter(|o| wanted.is_none_or(|w| *w == o.sub_order_id))
                    .filter(|o| state.is_none_or(|s| *s == o.state_code.to_string()))
                    .map(|o| json!({"sub_order_id": o.sub_order_id, "state_code": o.state_code}))
                    .collect();
                Ok(json!({"total": list.len(), "list": list}))
            }
            "order/retailerAddExpress" => (|| {
                let id = get(params, "sub_order_id")?;
                if orders.get(appid, id).is_none() {
                    return Err((super::orders::NOT_FOUND, "sub order not found".into()));
                }
                let shipment = json!({
                    "sub_order_id": id,
                    "express_company": get(params, "express_company")?,
                    "express_no": get(params, "express_no")?,
                });
                self.express
                    .insert((a.clone(), id.into()), shipment.clone());
                Ok(shipment)
            })(),
            _ => return None,
        };
        Some(answer)
    }

    /// The shipment recorded for a sub order.
    pub fn express(&self, appid: &str, sub_order_id: &str) -> Option<&Value> {
        self.express
            .get(&(appid.to_owned(), sub_order_id.to_owned()))
    }
}
