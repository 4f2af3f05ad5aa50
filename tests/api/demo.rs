//! `weibo-relay-tooling demo`, the README's first command, run as a user would.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

fn demo(orders: &str) -> Command {
    let mut cmd = Command::new(crate::support::tooling_bin());
    cmd.args(["demo", "--orders", orders])
        .env_remove("WEIBO_RELAY_CONFIG")
        .env_remove("RUST_LOG");
    cmd
}

/// The number on the summary line that starts with `label`.
fn summary_value(stdout: &str, label: &str) -> u64 {
    stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix(label))
        .and_then(|rest| rest.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {label} in {stdout}"))
}

/// 5,000 orders, 10,000 pushes, and a stock-sync client calling the gateway meanwhile: well past the 1,024 changes the sandbox's push sender used
/// to drop once it fell behind, and past the load at which pushes came later than the
/// reconciliation left to them (the demo then reported 515 states reconciled, each one a
/// state its push also brought: a duplicate). Nothing is reconciled with no outage, and the
/// consumer never sees a state twice.
#[test]
fn the_demo_brings_every_order_to_a_final_state_at_volume_and_says_so() {
    let out = demo("5000").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let value = |label: &str| summary_value(&stdout, label);
    // Ids are consecutive, so exactly 500 of 5,000 are multiples of 10 and get closed.
    assert_eq!(value("finished"), 4500, "{stdout}");
    assert_eq!(value("closed"), 500, "{stdout}");
    assert_eq!(value("accepted"), 10000, "{stdout}");
    assert_eq!(value("pushed"), 10000 + value("duplicates"), "{stdout}");
    assert_eq!(value("not pushed"), 0, "{stdout}");
    assert_eq!(value("reconciled"), 0, "{stdout}");
    assert_eq!(value("states twice"), 0, "{stdout}");
    assert_eq!(value("dead-lettered"), 0, "{stdout}");
    // The stock-sync client called through the gateway all along, every call answered 200.
    assert!(value("gateway calls") > 0, "{stdout}");
    assert_eq!(value("gateway failed"), 0, "{stdout}");
    assert!(
        stdout.contains("result: every order reached a final state"),
        "{stdout}"
    );
    assert!(
        stderr.contains("demo: 5000/5000 orders final"),
        "plain progress lines off a terminal: {stderr}"
    );
    for line in stderr.lines() {
        assert!(!line.contains("ERROR") && !line.contains("WARN"), "{line}");
    }
}

/// Against a platform that answers as Weibo's gateway does and rate-limits at 50 calls a
/// second, well below the demo worker's pace: every rate-limited call is read as such and
/// retried, none dead-lettered, every order final.
#[test]
fn the_demo_finishes_against_the_weibo_gateway_envelope_and_its_rate_limit() {
    let out = demo("300")
        .args(["--error-envelope", "weibo", "--platform-rate-limit", "50"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let value = |label: &str| summary_value(&stdout, label);
    assert_eq!(value("finished"), 270, "{stdout}");
    assert_eq!(value("closed"), 30, "{stdout}");
    assert_eq!(value("dead-lettered"), 0, "{stdout}");
    assert!(value("retried") > 0, "nothing was rate-limited: {stdout}");
    for line in stderr.lines() {
        assert!(!line.contains("ERROR"), "{line}");
    }
}

#[tokio::test]
async fn an_interrupted_demo_stops_at_once_says_how_far_it_got_and_leaves_nothing_behind() {
    let mut child = demo("20000")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let guard = crate::support::KillOnDrop::new(child.id());
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let prefix = loop {
        let line = stderr.next().expect("the demo names its queues").unwrap();
        if let Some(rest) = line.split(" queues ").nth(1) {
            break rest.split('*').next().unwrap().to_owned();
        }
    };
    // Wait until orders are flowing, then interrupt as Ctrl-C does.
    let progress = stderr
        .find(|l| l.as_ref().is_ok_and(|l| l.contains("pushes accepted")))
        .expect("progress")
        .unwrap();
    assert!(progress.starts_with("demo: "), "{progress}");
    let interrupted = std::time::Instant::now();
    assert!(Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    guard.disarm();
    let took = interrupted.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert!(stdout.contains("result: interrupted with "), "{stdout}");
    // The first line says what was done of what was asked, not "20000 orders in 5.9 s".
    let first = stdout.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("weibo-relay demo: ")
            && first.contains(" of 20000 orders final after ")
            && first.ends_with(" s (interrupted)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("of 20000 orders final; queues deleted"),
        "{stdout}"
    );

    // Nothing of that run is left on the broker: no queue (events, log stream, work, delay,
    // dead, keeper, permits, the sample consumer's) and no exchange (events, tokens).
    for what in ["list_queues", "list_exchanges"] {
        let listed = Command::new("rabbitmqctl")
            .args([what, "-q", "--no-table-headers", "name"])
            .output()
            .unwrap();
        assert!(listed.status.success(), "rabbitmqctl {what} failed");
        let names = String::from_utf8_lossy(&listed.stdout);
        let left: Vec<&str> = names.lines().filter(|n| n.starts_with(&prefix)).collect();
        assert!(left.is_empty(), "{what}: {left:?} still there");
    }
}

/// The platform gives up on every push for the first seconds: the orders still end final,
/// their states brought by reconciliation, each state once.
#[test]
fn the_demo_recovers_from_a_push_outage_through_reconciliation() {
    let out = demo("200").args(["--outage", "3"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let value = |label: &str| summary_value(&stdout, label);
    assert_eq!(value("finished") + value("closed"), 200, "{stdout}");
    assert!(value("not pushed") >= 200, "{stdout}");
    // Every paid state (the consumer needs each), and only states whose push was lost.
    assert!(value("reconciled") >= 200, "{stdout}");
    assert!(value("reconciled") <= value("not pushed"), "{stdout}");
    assert_eq!(value("states twice"), 0, "{stdout}");
    assert!(
        stdout.contains("result: every order reached a final state"),
        "{stdout}"
    );
    for line in stderr.lines() {
        assert!(!line.contains("ERROR") && !line.contains("WARN"), "{line}");
    }
}

/// No broker at all: the demo stops at once with one line that names the address, says it
/// cannot be reached and where to get a RabbitMQ; no warning before it, nothing to clean up.
#[test]
fn without_a_broker_the_demo_stops_at_once_saying_where_to_get_one() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let started = std::time::Instant::now();
    let out = demo("200")
        .args([
            "--amqp-url",
            &format!("amqp://guest:guest@127.0.0.1:{closed}/%2f"),
        ])
        .output()
        .unwrap();
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert!(out.stdout.is_empty());
    assert_eq!(
        stderr,
        format!("weibo-relay-tooling: the broker is unreachable: amqp://guest:[redacted]@127.0.0.1:{closed}/%2f: nothing listens at 127.0.0.1:{closed} (Connection refused (os error 111)). RabbitMQ is needed: `bash .ci/demo` starts one where it can (apt or Docker); otherwise README, \"Get Rust and RabbitMQ\", says how; another broker: --amqp-url URL or amqp.url\n")
    );
}

/// `demo --provider --merchants 3`: three merchants onboarded through the consent page (each
/// heard as a `merchant.*` event), the orders spread among them and every one final, pushed
/// with each merchant's uid and called with its token; the run's database is dropped.
#[test]
fn the_provider_demo_onboards_merchants_and_brings_each_ones_orders_to_a_final_state() {
    let out = demo("90")
        .args(["--provider", "--merchants", "3"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let value = |label: &str| summary_value(&stdout, label);
    assert_eq!(value("accepted"), 180, "{stdout}");
    assert_eq!(value("reconciled"), 0, "{stdout}");
    assert_eq!(value("finished") + value("closed"), 90, "{stdout}");
    assert!(
        stdout.contains("merchants (onboarded through the consent page; 3 merchant events)"),
        "{stdout}"
    );
    let mut orders = 0;
    for (n, uid) in [(1, "1000000001"), (2, "1000000002"), (3, "1000000003")] {
        let line = stdout
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("shop-{n} ")))
            .unwrap_or_else(|| panic!("no line for shop-{n}: {stdout}"));
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            words[..3],
            [format!("shop-{n}").as_str(), "uid", uid],
            "{line}"
        );
        assert_eq!(words[3], words[5], "every order final: {line}");
        let own: u64 = words[3].parse().expect("a count");
        assert!(own > 0, "each merchant has orders: {line}");
        orders += own;
    }
    assert_eq!(orders, 90, "{stdout}");
    assert!(
        !stderr.contains("WARN") && !stderr.contains("ERROR"),
        "{stderr}"
    );
}
