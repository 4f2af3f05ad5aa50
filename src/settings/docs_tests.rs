//! The documents hold to the code: every key the relay reads, and every number's range, is
//! in `defaults.toml`, the contract and README.

use super::*;

/// Every key of the defaults file (the optional ones, commented out there, included):
/// (section, key), in file order.
fn documented_keys(defaults: &str) -> Vec<(String, String)> {
    let mut section = String::new();
    let mut keys = Vec::new();
    for line in defaults.lines() {
        let line = line.trim();
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.trim_matches('[').trim_matches(']').to_owned();
            continue;
        }
        let setting = line.strip_prefix("# ").unwrap_or(line);
        if let Some((key, _)) = setting.split_once(" = ") {
            if !key.is_empty() && key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
                keys.push((section.clone(), key.to_owned()));
            }
        }
    }
    keys
}

/// Every key the relay reads is in the contract's configuration block (under its section)
/// and in README's configuration tables: a key added to the code and not to the documents
/// fails here.
#[test]
fn every_configuration_key_is_in_the_contract_and_the_readme() {
    let defaults = include_str!("defaults.toml");
    let contract = include_str!("../../docs/relay-contract.md");
    let readme = include_str!("../../README.md");
    let block = contract
        .split("```toml")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("the contract has a TOML configuration block");
    let keys = documented_keys(defaults);
    assert!(keys.len() > 40, "{keys:?}");
    for (section, key) in &keys {
        let header = format!("[{section}]");
        let part = block
            .split_once(&header)
            .map(|(_, rest)| rest.split("\n[").next().unwrap_or(rest))
            .unwrap_or_else(|| panic!("the contract has no {header}"));
        assert!(
            part.lines().any(|l| {
                let l = l.trim_start_matches("# ");
                l.starts_with(&format!("{key} ")) || l.starts_with(&format!("{key}="))
            }),
            "{section}.{key} is not in the contract's [{section}]"
        );
        let qualified = format!("`{section}.{key}`");
        let row_start = format!("| `{section}.");
        assert!(
            readme.contains(&qualified)
                || readme
                    .lines()
                    .any(|l| l.starts_with(&row_start) && l.contains(&format!("`{key}`"))),
            "{section}.{key} is not in README's configuration tables"
        );
    }
}

/// Every number of the defaults file, probed with -1: its type refuses it naming its
/// range, "`MIN` to `MAX`", which the defaults file writes in the comment over the key
/// (or over the keys it shares a comment with) and README's configuration table in its
/// row. A new numeric key is a field of a ranged type and its line in the defaults file;
/// one left out of the documents, or of a type without a range, fails here.
#[test]
fn every_number_has_a_range_in_its_type_the_defaults_file_and_the_readme() {
    let defaults = include_str!("defaults.toml");
    let readme = include_str!("../../README.md");
    let table: toml::Table = defaults.parse().unwrap();
    let mut probed = Vec::new();
    for (section, keys) in &table {
        let Some(keys) = keys.as_table() else {
            continue;
        };
        for (name, _) in keys.iter().filter(|(_, v)| v.is_integer()) {
            let key = format!("{section}.{name}");
            let range = match Settings::from_toml(&format!("[{section}]\n{name} = -1\n")) {
                Err(ConfigError::Invalid { key: named, reason }) if named == key => reason
                    .strip_prefix("must be ")
                    .and_then(|r| r.strip_suffix(" (got -1)"))
                    .unwrap_or_else(|| panic!("{key}: the refusal names no range: {reason}"))
                    .to_owned(),
                other => panic!("{key} = -1: {other:?}"),
            };
            assert_documented(defaults, readme, section, name, &range);
            probed.push(key);
        }
    }
    assert!(probed.len() >= 22, "{probed:?}");
}

fn assert_documented(defaults: &str, readme: &str, section: &str, name: &str, range: &str) {
    let key = format!("{section}.{name}");
    let lines: Vec<&str> = defaults.lines().collect();
    let mut in_section = false;
    let at = lines
        .iter()
        .position(|l| {
            if l.starts_with('[') {
                in_section = *l == format!("[{section}]");
            }
            in_section && l.starts_with(&format!("{name} = "))
        })
        .unwrap_or_else(|| panic!("{key} is not in defaults.toml"));
    let above: Vec<&str> = lines[..at]
        .iter()
        .rev()
        .take_while(|l| !l.is_empty() && !l.starts_with('['))
        .copied()
        .collect();
    assert!(
        above
            .iter()
            .any(|l| l.starts_with('#') && l.contains(range))
            || above.join(" ").contains(range),
        "defaults.toml does not say {range} over {key}"
    );
    let row = readme
        .lines()
        .find(|l| {
            l.starts_with(&format!("| `{key}`"))
                || (l.starts_with(&format!("| `{section}.")) && l.contains(&format!("`{name}`")))
        })
        .unwrap_or_else(|| panic!("README has no row for {key}"));
    assert!(
        row.contains(range),
        "README's row for {key} does not say {range}: {row}"
    );
}
