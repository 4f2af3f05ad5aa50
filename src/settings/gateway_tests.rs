use super::*;
use crate::settings::Settings;

const CLIENT: &str = r#"
[[gateway.clients]]
name = "stock-sync"
key_sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
interfaces = ["goods/setGoodsStock*", "goods/getGoodsInfo"]
appids = ["100023"]
rate_limit_per_sec = 10
"#;

#[test]
fn the_defaults_hold_the_seeds_37_interfaces_with_their_method_and_writes() {
    let s = Settings::from_toml("").unwrap();
    let rows = &s.gateway.interfaces;
    assert_eq!(rows.len(), 37);
    assert_eq!(rows.keys().filter(|k| k.starts_with("order/")).count(), 8);
    assert_eq!(rows.keys().filter(|k| k.starts_with("goods/")).count(), 29);
    for (name, row) in rows {
        let short = name.split_once('/').unwrap().1;
        let read = short.starts_with("get")
            || short.starts_with("retailerGet")
            || short.starts_with("retailerSearch");
        assert_eq!(row.method == PlatformMethod::Get, read, "{name}");
        assert_eq!(row.writes, !read, "{name}");
        assert!(row.commands, "{name}");
    }
    assert_eq!(s.gateway.bind, None);
    assert!(s.gateway.clients.is_empty());
}

#[test]
fn a_client_reads_and_its_globs_match() {
    let s = Settings::from_toml(CLIENT).unwrap();
    let c = &s.gateway.clients[0];
    assert!(c.allows_interface("goods/setGoodsStockSkuid"));
    assert!(c.allows_interface("goods/setGoodsStockPin"));
    assert!(c.allows_interface("goods/getGoodsInfo"));
    assert!(!c.allows_interface("goods/setGoodsPriceSkuid"));
    assert!(c.allows_appid("100023") && !c.allows_appid("200046"));
    assert!(!format!("{c:?}").contains("9f86d081884c7d659a2f"), "{c:?}");
}

#[test]
fn an_operator_row_replaces_or_adds_and_can_refuse_commands() {
    let s = Settings::from_toml(
        r#"
[gateway.interfaces]
"goods/getGoodsInfo" = { method = "POST", writes = false }
"goods/newThing" = { method = "POST", writes = true, commands = false }
"#,
    )
    .unwrap();
    let rows = &s.gateway.interfaces;
    assert_eq!(rows.len(), 38);
    assert_eq!(rows["goods/getGoodsInfo"].method, PlatformMethod::Post);
    assert!(!rows["goods/newThing"].commands);
}

#[test]
fn each_bad_value_is_refused_naming_its_key() {
    for (toml, key) in [
        ("[gateway]\nshare = 1.5", "gateway.share"),
        ("[gateway]\ndeadline_ms = 0", "gateway.deadline_ms"),
        ("[gateway]\nbind = \"nowhere\"", "gateway.bind"),
        (
            "[gateway.interfaces]\n\"goods/../x\" = { method = \"GET\", writes = false }",
            "gateway.interfaces",
        ),
        (
            &CLIENT.replace("stock-sync", "Stock Sync"),
            "gateway.clients[0].name",
        ),
        (
            &CLIENT.replace("stock-sync", "other"),
            "gateway.clients[0].name",
        ),
        (
            &CLIENT.replace("9f86d0", "zz"),
            "gateway.clients[0].key_sha256",
        ),
        (
            &CLIENT.replace("goods/getGoodsInfo", "goods/nothing"),
            "gateway.clients[0].interfaces",
        ),
        (
            &CLIENT.replace("\"100023\"", "\"1 2\""),
            "gateway.clients[0].appids",
        ),
        (
            &CLIENT.replace("= 10", "= 0"),
            "gateway.clients[0].rate_limit_per_sec",
        ),
        (
            &format!("{CLIENT}{}", CLIENT.replace("stock-sync", "b")),
            "gateway.clients[1].key_sha256",
        ),
    ] {
        match Settings::from_toml(toml) {
            Err(ConfigError::Invalid { key: named, reason }) => {
                assert!(named.starts_with(key), "{toml}: {named}: {reason}")
            }
            other => panic!("{toml}: {other:?}"),
        }
    }
}

#[test]
fn globs_match_stars_only() {
    assert!(glob("a*c", "abbbc") && glob("*", "x/y") && glob("a*", "a"));
    assert!(!glob("a*c", "abd") && !glob("abc", "abcd"));
}
