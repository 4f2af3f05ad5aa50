//! The sandbox's sub orders and their state machine: 201 paid -> 301 finished | 302 closed
//! (303, fulfilment timed out, can only be set by the admin API).

use std::collections::HashMap;

use std::time::SystemTime;

use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;

/// Paid, awaiting fulfilment.
pub const PAID: u16 = 201;
/// Finished by the merchant.
pub const FINISHED: u16 = 301;
/// Closed by the merchant.
pub const CLOSED: u16 = 302;
/// Fulfilment timed out.
pub const TIMED_OUT: u16 = 303;

/// Sub order not found.
pub const NOT_FOUND: i64 = 70101;
/// Already finished.
pub const ALREADY_FINISHED: i64 = 70102;
/// Already closed.
pub const ALREADY_CLOSED: i64 = 70103;
/// The state does not allow the action.
pub const NOT_ALLOWED: i64 = 70104;

/// One sub order, as `retailerGetSub` and the admin API show it.
#[derive(Debug, Clone, Serialize)]
pub struct Order {
    /// Owning merchant.
    pub appid: String,
    /// A provider's order: the merchant (uid) it belongs to, whose token lists it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// int64 as a string, as everywhere.
    pub sub_order_id: String,
    /// 201, 301, 302 or 303.
    pub state_code: u16,
    /// The close reason, once closed.
    pub reason: Option<String>,
    /// Fulfilment deadline, platform format.
    pub expect_finish_time: String,
    /// Fulfilment type (1 = direct recharge in this model).
    pub finish_type: u8,
    /// Whether the deadline has passed.
    pub is_timeout: u8,
    /// The buyer's phone (fake data).
    pub contact_phone: String,
    /// When the state last changed, Beijing time, as `retailerGetSubList` shows it.
    pub update_time: String,
    #[serde(skip)]
    updated_at: SystemTime,
}

impl Order {
    /// The event content for this order in `state_code`: the spec's example fields plus the
    /// 2023 ones (a push's `data`).
    pub fn content(&self, state_code: u16) -> Value {
        json!({
            "recharge_account_type": "1",
            "recharge_account": self.contact_phone,
            "sub_order_id": self.sub_order_id,
            "state_code": state_code,
            "addtime": "2022-07-21 12:15:02",
            "pay_time": "2022-07-21 12:15:09",
            "buyer_id": "1766",
            "sku_list": [{"goods_id": "1083814100038", "sku_id": "3924", "state_code": 502, "sold_state_code": 601, "pin": ""}],
            "buyer": {"weibo_uid": "6748678500"},
            "expect_finish_time": self.expect_finish_time,
            "finish_type": self.finish_type,
            "is_timeout": self.is_timeout,
            "contact_phone": self.contact_phone,
        })
    }

    /// A row of `retailerGetSubList`: the content in its current state, and `update_time`.
    pub fn list_row(&self) -> Value {
        let mut row = self.content(self.state_code);
        row["update_time"] = json!(self.update_time);
        row
    }

    fn touch(&mut self) {
        self.updated_at = SystemTime::now();
        self.update_time = weibo_relay::weibo::beijing_time(self.updated_at);
    }
}

/// A state change, published for a push sender to turn into platform pushes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderEvent {
    /// Owning merchant.
    pub appid: String,
    /// The sub order.
    pub sub_order_id: String,
    /// Its new state.
    pub state_code: u16,
}

/// Every sub order of the sandbox, keyed by merchant and id.
pub struct OrderStore {
    orders: HashMap<(String, String), Order>,
    next_id: u64,
    // Unbounded, like the platform's own queue of pushes: a subscriber that falls behind
    // gets every change late, never loses one.
    subscribers: Vec<mpsc::UnboundedSender<OrderEvent>>,
}

impl Default for OrderStore {
    fn default() -> Self {
        Self {
            orders: HashMap::new(),
            // Shaped like the platform's ids (15 digits).
            next_id: 366_383_890_000_001,
            subscribers: Vec::new(),
        }
    }
}

impl OrderStore {
    /// Creates `count` orders for `appid` in `state_code`; returns their ids.
    pub fn create(&mut self, appid: &str, count: usize, state_code: u16) -> Vec<String> {
        self.create_for(appid, None, count, state_code)
    }

    /// Creates `count` orders for `appid` (a provider's: of the merchant `uid`); returns
    /// their ids.
    pub fn create_for(
        &mut self,
        appid: &str,
        uid: Option<&str>,
        count: usize,
        state_code: u16,
    ) -> Vec<String> {
        (0..count)
            .map(|_| {
                let id = self.next_id.to_string();
                self.next_id += 1;
                let mut order = Order {
                    appid: appid.to_owned(),
                    uid: uid.map(str::to_owned),
                    sub_order_id: id.clone(),
                    state_code,
                    reason: None,
                    expect_finish_time: "2099-01-01 00:00:00".into(),
                    finish_type: 1,
                    is_timeout: u8::from(state_code == TIMED_OUT),
                    contact_phone: "13800000000".into(),
                    update_time: String::new(),
                    updated_at: SystemTime::UNIX_EPOCH,
                };
                order.touch();
                self.orders.insert((appid.to_owned(), id.clone()), order);
                self.emit(appid, &id, state_code);
                id
            })
            .collect()
    }

    /// Every order of `appid`.
    pub fn of<'a>(&'a self, appid: &'a str) -> impl Iterator<Item = &'a Order> + 'a {
        self.orders.values().filter(move |o| o.appid == appid)
    }

    /// The order, if `appid` owns one with this id.
    pub fn get(&self, appid: &str, sub_order_id: &str) -> Option<&Order> {
        self.orders
            .get(&(appid.to_owned(), sub_order_id.to_owned()))
    }

    /// `retailerFinishSub`: 201 -> 301, else the code saying why not.
    pub fn finish(&mut self, appid: &str, sub_order_id: &str) -> Result<&Order, i64> {
        self.transition(appid, sub_order_id, FINISHED, None)
    }

    /// `retailerCloseSub`: 201 -> 302, else the code saying why not.
    pub fn close(&mut self, appid: &str, sub_order_id: &str, reason: &str) -> Result<&Order, i64> {
        self.transition(appid, sub_order_id, CLOSED, Some(reason))
    }

    /// The orders of `appid` last changed in `[start, end]`, oldest change first (then by id),
    /// as `retailerGetSubList` pages through them.
    /// (A provider's call names the merchant by its token: `uid` then keeps that merchant's.)
    pub fn changed_between(
        &self,
        appid: &str,
        uid: Option<&str>,
        start: SystemTime,
        end: SystemTime,
    ) -> Vec<&Order> {
        let mut found: Vec<&Order> = self
            .orders
            .values()
            .filter(|o| o.appid == appid && o.updated_at >= start && o.updated_at <= end)
            .filter(|o| uid.is_none_or(|uid| o.uid.as_deref() == Some(uid)))
            .collect();
        found.sort_by(|a, b| (a.updated_at, &a.sub_order_id).cmp(&(b.updated_at, &b.sub_order_id)));
        found
    }

    /// State changes from now on (creation included), every one of them.
    pub fn subscribe(&mut self) -> mpsc::UnboundedReceiver<OrderEvent> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.subscribers.push(tx);
        rx
    }

    fn transition(
        &mut self,
        appid: &str,
        sub_order_id: &str,
        to: u16,
        reason: Option<&str>,
    ) -> Result<&Order, i64> {
        let key = (appid.to_owned(), sub_order_id.to_owned());
        let order = self.orders.get_mut(&key).ok_or(NOT_FOUND)?;
        match order.state_code {
            PAID => {
                order.state_code = to;
                order.reason = reason.map(str::to_owned);
                order.touch();
            }
            FINISHED => return Err(ALREADY_FINISHED),
            CLOSED => return Err(ALREADY_CLOSED),
            _ => return Err(NOT_ALLOWED),
        }
        self.emit(appid, sub_order_id, to);
        Ok(&self.orders[&key])
    }

    fn emit(&mut self, appid: &str, sub_order_id: &str, state_code: u16) {
        let event = OrderEvent {
            appid: appid.to_owned(),
            sub_order_id: sub_order_id.to_owned(),
            state_code,
        };
        // A subscriber that went away is forgotten.
        self.subscribers.retain(|s| s.send(event.clone()).is_ok());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_machine() {
        let mut store = OrderStore::default();
        let mut events = store.subscribe();
        let ids = store.create("a", 4, PAID);
        let timed_out = store.create("a", 1, TIMED_OUT).remove(0);
        assert_eq!(store.finish("a", &ids[0]).unwrap().state_code, FINISHED);
        assert_eq!(store.finish("a", &ids[0]).unwrap_err(), ALREADY_FINISHED);
        assert_eq!(
            store.close("a", &ids[0], "r").unwrap_err(),
            ALREADY_FINISHED
        );
        let closed = store.close("a", &ids[1], "out of stock").unwrap();
        assert_eq!(
            (closed.state_code, closed.reason.as_deref()),
            (CLOSED, Some("out of stock"))
        );
        assert_eq!(store.close("a", &ids[1], "r").unwrap_err(), ALREADY_CLOSED);
        assert_eq!(store.finish("a", &ids[1]).unwrap_err(), ALREADY_CLOSED);
        assert_eq!(store.finish("a", &timed_out).unwrap_err(), NOT_ALLOWED);
        assert_eq!(store.finish("b", &ids[2]).unwrap_err(), NOT_FOUND);
        assert_eq!(store.finish("a", "1").unwrap_err(), NOT_FOUND);
        let seen: Vec<u16> = std::iter::from_fn(|| events.try_recv().ok())
            .map(|e| e.state_code)
            .collect();
        assert_eq!(seen, [PAID, PAID, PAID, PAID, TIMED_OUT, FINISHED, CLOSED]);
    }
}
