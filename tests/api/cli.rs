//! The binary's own answers: signatures and configuration errors.

use std::process::Command;
use weibo_relay::settings::AmqpUrl;

use crate::support::ConfigFile;

fn relay() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_weibo-relay"));
    cmd.env_remove("WEIBO_RELAY_CONFIG");
    cmd
}

#[test]
fn sign_prints_the_seed_signature_and_the_signed_string() {
    let out = relay()
        .args([
            "sign",
            "YOUR SIGN KEY",
            "goods_id=371965",
            "appid=100023",
            "sign_type=md5",
            "--verbose",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "appid=100023&goods_id=371965YOUR SIGN KEY\nacd244ced696e4aaf1174bc7242969a5\n"
    );
}

#[test]
fn bad_configuration_exits_non_zero_with_one_line_naming_the_key() {
    let config = ConfigFile::with_text("[[merchants]]\nappid = \"1\"\nsign_key = \"k-0123456789abcdef\"\nclient_id = \"772915\"\nclient_secret = \"\"\nuid = \"1404376560\"\n").unwrap();
    let out = relay()
        .args(["receiver", "--config"])
        .arg(config.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("merchants[0].client_secret: must be at least 16 bytes (got 0)"),
        "{stderr}"
    );

    let out = relay()
        .args(["receiver"])
        .env("WEIBO_RELAY__HTTP__BINDD", "x")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        stderr,
        "weibo-relay: invalid configuration: http: unknown field `bindd`, expected one of \
         `bind`, `admin_bind`, `max_body_bytes`, `body_timeout_ms`, `max_connections`, \
         `shutdown_timeout_secs`, `workers`\n",
        "said once, on one line, naming the table as every refusal names its key"
    );

    // A file that is not TOML: one line still, with where and why.
    let config = ConfigFile::with_text("[http\nbind = 1\n").unwrap();
    let out = relay()
        .args(["receiver", "--config"])
        .arg(config.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(
            "weibo-relay: invalid configuration: TOML parse error at line 1, column 6: \
             unclosed table, expected `]`: in "
        ),
        "{stderr}"
    );
    assert!(stderr.trim_end().ends_with("relay.toml"), "{stderr}");
}

#[test]
fn a_relay_without_merchants_refuses_to_start() {
    let out = relay()
        .args(["serve"])
        .env("WEIBO_RELAY__HTTP__BIND", "127.0.0.1:0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        stderr.trim(),
        "weibo-relay: invalid configuration: merchants: at least one [[merchants]] entry is required (or a [provider] section)"
    );
}

#[test]
fn the_shipped_example_config_is_refused_until_filled_in() {
    let example =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/relay.example.toml");
    let out = relay()
        .args(["serve", "--config"])
        .arg(&example)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        stderr.trim(),
        "weibo-relay: invalid configuration: merchants[0].sign_key: is a placeholder from an example file: put the real credential here"
    );
}

/// Runs `weibo-relay dlq list` with `toml` as its configuration.
#[test]
fn the_tools_earlier_releases_had_are_named_where_they_went() {
    for command in ["demo", "sandbox", "bench"] {
        let out = relay().args([command, "--orders", "5"]).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{command}");
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            format!(
                "weibo-relay: `{command}` is a command of weibo-relay-tooling, the demo and test \
                 tools: `bash .ci/demo` (README), or `cargo run --release --bin \
                 weibo-relay-tooling -- {command}`\n"
            )
        );
    }
    // Any other unknown command: clap's own error, exit 2.
    let out = relay().arg("demox").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unrecognized subcommand 'demox'"));
}

fn dlq_list(toml: &str) -> std::process::Output {
    let config = ConfigFile::with_text(toml).unwrap();
    let out = relay()
        .args(["dlq", "list", "--config"])
        .arg(config.path())
        .output()
        .unwrap();
    out
}

#[test]
fn dlq_list_before_any_worker_ran_says_there_are_no_dead_letters() {
    let settings = crate::support::test_settings(crate::support::AMQP_URL);
    let toml = crate::support::relay_toml(&settings);
    let out = dlq_list(&toml);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "{stderr}");
    assert_eq!(out.stdout, b"");
    assert_eq!(
        stderr.trim(),
        format!("no dead letters in {}.dead", settings.amqp.fulfilment_queue)
    );
}

#[test]
fn dlq_tools_try_every_node_and_name_each_without_the_password() {
    // Two closed ports: nothing listens there (bound and dropped a moment ago).
    let closed: Vec<u16> = (0..2)
        .map(|_| {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        })
        .collect();
    let urls: Vec<String> = closed
        .iter()
        .map(|p| format!("amqp://ops:s3cret-pa55word-xyz@127.0.0.1:{p}/%2f"))
        .collect();
    let mut settings = crate::support::test_settings(&urls[0]);
    settings.amqp.urls = urls.iter().map(|u| AmqpUrl::parse(u).unwrap()).collect();
    let toml = crate::support::relay_toml(&settings);
    let out = dlq_list(&toml);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("cannot connect to the broker: "),
        "{stderr}"
    );
    for p in &closed {
        assert!(
            stderr.contains(&format!("127.0.0.1:{p}")),
            "{p} not named: {stderr}"
        );
    }
    assert!(!stderr.contains("s3cret"), "{stderr}");
}

/// Runs `weibo-relay ARGS` for at most `within`, then kills it: (exit code, stdout, stderr).
fn run_for(args: &[&str], within: std::time::Duration) -> (Option<i32>, String, String) {
    use std::process::Stdio;
    let started = std::time::Instant::now();
    // `demo` is the tooling's; every other command the relay's.
    let mut command = match args.first() {
        Some(&"demo") => Command::new(crate::support::tooling_bin()),
        _ => relay(),
    };
    let mut child = command
        .args(args)
        .env_remove("RUST_LOG")
        .env("WEIBO_RELAY_LOG_FORMAT", "text")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    while child.try_wait().unwrap().is_none() && started.elapsed() < within {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `amqp.url` pointing at a port that speaks HTTP (the sandbox's): every command says so in
/// words, naming the address, never the AMQP parser's `ParserErrors { error: Nom(MapOpt) }`.
#[tokio::test]
async fn a_port_that_speaks_http_is_named_as_not_amqp_by_every_command() {
    use crate::support::*;
    let stage = Harness::builder().platform().stage().await;
    let http = stage.sandbox().base_url();
    let at = http.trim_start_matches("http://").to_owned();
    let mut settings = stage.settings().clone();
    settings.amqp.url = AmqpUrl::parse(&format!("amqp://guest:guest@{at}/%2f")).unwrap();
    let config = ConfigFile::of(&settings).unwrap();
    let path = config.path().to_str().unwrap().to_owned();
    let words = format!(
        "the peer at {at} does not speak AMQP 0-9-1 (is it RabbitMQ's AMQP port, 5672/5671, and amqps:// exactly when that port wants TLS?)"
    );
    let url = format!("amqp://guest:guest@{at}/%2f");
    let second = std::time::Duration::from_secs(1);
    let runs: Vec<(&str, Vec<&str>, std::time::Duration)> = vec![
        ("check", vec!["check", "--config", &path], 10 * second),
        ("dlq", vec!["dlq", "list", "--config", &path], 10 * second),
        (
            "events",
            vec!["events", "tail", "--config", &path],
            10 * second,
        ),
        ("demo", vec!["demo", "--amqp-url", &url], 10 * second),
        // serve retries for ever: two seconds of its log.
        ("serve", vec!["serve", "--config", &path], 2 * second),
    ];
    for (name, args, within) in runs {
        let args: Vec<String> = args.into_iter().map(str::to_owned).collect();
        let (code, stdout, stderr) = tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run_for(&args, within)
        })
        .await
        .unwrap();
        let all = format!("{stdout}{stderr}");
        assert!(all.contains(&words), "{name}: {all}");
        assert!(
            !all.contains("Nom(") && !all.contains("ParserErrors"),
            "{name}: {all}"
        );
        match name {
            "serve" => assert!(
                stdout
                    .lines()
                    .any(|l| l.contains("WARN") && l.contains(&words)),
                "{stdout}"
            ),
            "check" => assert_eq!(code, Some(2), "{all}"),
            _ => {
                assert_eq!(code, Some(2), "{name}: {all}");
                assert_eq!(stderr.lines().count(), 1, "{name}: {stderr}");
            }
        }
    }
}
