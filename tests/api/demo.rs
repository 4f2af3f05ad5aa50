//! `weibo-relay demo`, the README's first command, run as a user would.

use std::process::Command;

#[test]
fn the_demo_brings_every_order_to_a_final_state_and_says_so() {
    let out = Command::new(env!("CARGO_BIN_EXE_weibo-relay"))
        .args(["demo", "--orders", "30"])
        .env_remove("WEIBO_RELAY_CONFIG")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let value = |label: &str| -> u64 {
        stdout
            .lines()
            .find_map(|l| l.trim().strip_prefix(label))
            .and_then(|rest| rest.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {label} in {stdout}"))
    };
    // Ids are consecutive, so exactly 3 of 30 are multiples of 10 and get closed.
    assert_eq!(value("finished"), 27, "{stdout}");
    assert_eq!(value("closed"), 3, "{stdout}");
    assert_eq!(value("pushed"), 60, "{stdout}");
    assert_eq!(value("accepted"), 60, "{stdout}");
    assert_eq!(value("dead-lettered"), 0, "{stdout}");
    assert!(
        stdout.contains("result: every order reached a final state"),
        "{stdout}"
    );
    assert!(
        stderr.contains("demo: 30/30 orders final"),
        "plain progress lines off a terminal: {stderr}"
    );
}
