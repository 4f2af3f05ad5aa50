//! `order/retailerGetSubList` in the sandbox: a page of the orders changed in a range, as
//! the platform's model answers it (Beijing times, capped pages, junk rows as a fault).

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::platform::{Refusal, BAD_PARAMETER};

/// One page of the orders changed in a range; pages hold at most the fault `list_page_cap`
/// rows whatever `page_size` asks for, as a platform may cap them.
pub(super) fn page(
    world: &super::state::World,
    appid: &str,
    caller: Option<&str>,
    params: &BTreeMap<String, String>,
) -> Result<Value, Refusal> {
    let get = |k: &str| params.get(k).map(String::as_str).unwrap_or_default();
    let time = |k: &str| {
        parse_beijing_time(get(k))
            .ok_or_else(|| (BAD_PARAMETER, format!("{k} must be YYYY-MM-DD HH:MM:SS")))
    };
    let (start, end) = (time("start_time")?, time("end_time")?);
    let page: usize = get("page")
        .parse()
        .ok()
        .filter(|p| *p >= 1)
        .ok_or((BAD_PARAMETER, "page must be 1 or more".to_owned()))?;
    let asked: usize = get("page_size")
        .parse()
        .ok()
        .filter(|s| (1..=100).contains(s))
        .ok_or((BAD_PARAMETER, "page_size must be 1 to 100".to_owned()))?;
    if let Some(junk) = &world.faults.faults.list_junk {
        return Ok(json!({"total": junk.total, "list": junk.page(page)}));
    }
    let size = world
        .faults
        .faults
        .list_page_cap
        .map_or(asked, |cap| asked.min(cap as usize).max(1));
    let changed = world.orders.changed_between(appid, caller, start, end);
    let list: Vec<Value> = changed
        .iter()
        .skip((page - 1) * size)
        .take(size)
        .map(|o| o.list_row())
        .collect();
    Ok(json!({"total": changed.len(), "list": list}))
}

/// Reads a Beijing-time `YYYY-MM-DD HH:MM:SS` (UTC+8), as the platform writes its times.
fn parse_beijing_time(text: &str) -> Option<std::time::SystemTime> {
    let rfc3339 = format!("{}Z", text.trim().replacen(' ', "T", 1));
    let shifted = humantime::parse_rfc3339(&rfc3339).ok()?;
    shifted.checked_sub(std::time::Duration::from_secs(8 * 3600))
}
