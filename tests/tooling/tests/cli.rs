//! The tooling's binary offers exactly its three commands. (Also what makes `cargo test` build
//! the binary, which the relay's integration tests run for the demo and the sandbox.)

use std::process::Command;

#[test]
fn the_tooling_binary_offers_sandbox_demo_and_bench() {
    let out = Command::new(env!("CARGO_BIN_EXE_weibo-relay-tooling"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    let commands: Vec<&str> = help
        .lines()
        .skip_while(|l| *l != "Commands:")
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(commands, ["sandbox", "demo", "bench", "help"], "{help}");
}
