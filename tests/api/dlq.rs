//! The operator's dead-letter tools against what anyone allowed to publish can put in
//! `.dead`, and against a worker that fails redriven commands again: `dlq list` escapes what
//! it did not write (its JSON stays exact, `last_code` a number), `dlq redrive` moves each dead
//! command once, and the worker logs an outcome as one line.

use std::time::Duration;

use lapin::options::BasicPublishOptions;
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::BasicProperties;
use serde_json::{json, Value};

use crate::support::deployment::Deployment;
use crate::support::rig::finish;
use crate::support::*;

/// Runs `weibo-relay dlq ARGS` with `settings` off the test's runtime: (exit code, stdout).
async fn dlq(settings: &weibo_relay::settings::Settings, args: &[&str]) -> (Option<i32>, String) {
    let config = ConfigFile::of(settings).unwrap();
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(BIN)
            .arg("dlq")
            .args(&args)
            .arg("--config")
            .arg(config.path())
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    (out.status.code(), String::from_utf8(out.stdout).unwrap())
}

fn text(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value.as_bytes().to_vec()))
}

#[tokio::test]
async fn dlq_list_escapes_what_it_did_not_write_and_its_json_stays_exact() {
    let rig = Harness::builder().rig().await;
    // A genuine dead command: the platform knows no such order (70101).
    rig.send(finish("missing-1")).await;
    eventually(Duration::from_secs(10), "one dead command", || async {
        rig.dead_depth().await == 1
    })
    .await;
    // Two put in `.dead` by hand: ids, reasons, codes and bodies that would move the cursor,
    // clear or colour the screen, set the terminal's title, reverse the text, or fake lines.
    let dead = weibo_relay::amqp::Names::new(&rig.app.settings.amqp)
        .dead()
        .to_owned();
    let fake = "evil\nid=cmd-2 attempts=0 last_code=null reason=\"\" command=ok";
    let body = "{\"appid\":\"100023\"}\u{1b}[2J\r\nid=fake attempts=9 last_code=0 reason=\"\" command=all good";
    let mut headers = FieldTable::default();
    headers.insert(
        "x-death-reason".into(),
        text("refused \u{1b}]0;pwned\u{7}\nfake"),
    );
    headers.insert("x-last-code".into(), text("70104"));
    headers.insert("x-attempts".into(), AMQPValue::LongInt(2));
    let mut other = FieldTable::default();
    other.insert("x-last-code".into(), text("\u{1b}[31m70101"));
    for (body, properties) in [
        (
            body,
            BasicProperties::default()
                .with_message_id(fake.into())
                .with_headers(headers),
        ),
        (
            "\u{202e}dlrow olleh",
            BasicProperties::default().with_headers(other),
        ),
    ] {
        rig.app
            .channel
            .basic_publish(
                "".into(),
                dead.as_str().into(),
                BasicPublishOptions::default(),
                body.as_bytes(),
                properties,
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }
    eventually(Duration::from_secs(5), "three dead commands", || async {
        rig.dead_depth().await == 3
    })
    .await;

    let (code, out) = dlq(&rig.app.settings, &["list"]).await;
    assert_eq!(code, Some(0), "{out}");
    use sha2::Digest;
    let hashed = format!(
        "sha256:{}",
        hex::encode(&sha2::Sha256::digest("\u{202e}dlrow olleh".as_bytes())[..16])
    );
    let genuine = out.lines().next().unwrap();
    assert!(
        genuine.contains(" attempts=1 last_code=70101 reason=\"platform refused: "),
        "{genuine}"
    );
    // One line per command, none more; nothing a terminal would act on.
    assert_eq!(
        out.lines().skip(1).collect::<Vec<_>>(),
        [
            "id=evil\\nid=cmd-2\\u{20}attempts=0\\u{20}last_code=null\\u{20}reason=\"\"\\u{20}command=ok \
             attempts=2 last_code=70104 reason=\"refused \\u{1b}]0;pwned\\u{7}\\nfake\" \
             command={\"appid\":\"100023\"}\\u{1b}[2J\\r\\nid=fake attempts=9 last_code=0 reason=\"\" command=all good"
                .to_owned(),
            format!("id={hashed} attempts=0 last_code=null reason=\"\" command=\\u{{202e}}dlrow olleh"),
        ]
    );
    assert!(!out.contains('\u{1b}') && !out.contains('\r') && !out.contains('\u{202e}'));

    // JSON gives every value exactly as it is, and the code as a number (null when there is
    // none, or none that is a number), as outcomes do.
    eventually(Duration::from_secs(5), "listed commands back", || async {
        rig.dead_depth().await == 3
    })
    .await;
    let (code, out) = dlq(&rig.app.settings, &["list", "--json"]).await;
    assert_eq!(code, Some(0), "{out}");
    let listed: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(listed.len(), 3, "{out}");
    assert_eq!(listed[0]["last_code"], json!(70101));
    assert_eq!(
        listed[1],
        json!({"id": fake, "body": body, "reason": "refused \u{1b}]0;pwned\u{7}\nfake",
               "attempts": 2, "last_code": 70104})
    );
    assert_eq!(
        listed[2],
        json!({"id": hashed, "body": "\u{202e}dlrow olleh", "reason": null, "attempts": 0,
               "last_code": null})
    );

    // The id as the text form printed it drops that command.
    eventually(Duration::from_secs(5), "listed commands back", || async {
        rig.dead_depth().await == 3
    })
    .await;
    let shown =
        "evil\\nid=cmd-2\\u{20}attempts=0\\u{20}last_code=null\\u{20}reason=\"\"\\u{20}command=ok";
    let (code, out) = dlq(&rig.app.settings, &["drop", "--id", shown]).await;
    assert_eq!(code, Some(0), "{out}");
    eventually(Duration::from_secs(5), "two dead commands left", || async {
        rig.dead_depth().await == 2
    })
    .await;
    let left = weibo_relay::worker::dlq::list(&rig.app.settings.amqp, 10)
        .await
        .unwrap();
    assert_eq!(left.len(), 2);
    assert!(left.iter().all(|d| d.id != fake), "{left:?}");
}

/// 40 dead commands the platform keeps refusing (no such order), redriven while a worker
/// process runs: each is moved once and called once more, however fast the worker sends it
/// back, and `--limit` moves exactly that many. The worker logs each answer as one line.
#[tokio::test]
async fn redrive_moves_each_dead_command_once_while_a_worker_keeps_failing_them() {
    const N: u64 = 40;
    let mut d = Deployment::start(Duration::from_secs(7200), 1000).await;
    let worker = d.spawn(None).await;
    d.wait_ready(worker).await;
    let fq = d.settings.amqp.fulfilment_queue.clone();
    let dead = format!("{fq}.dead");
    let depth = |queue: String| {
        let connection = &d.connection;
        async move {
            weibo_relay::amqp::topology::queue_depth(connection, &queue)
                .await
                .unwrap()
                .unwrap_or(0)
        }
    };
    let refused = || async {
        d.counters().await["calls"]["retailerFinishSub"]["70101"]
            .as_u64()
            .unwrap_or(0)
    };
    let ids: Vec<String> = (0..N).map(|i| format!("missing-{i:04}")).collect();
    d.send_finishes(&ids).await;
    eventually(Duration::from_secs(30), "every command dead", || async {
        depth(dead.clone()).await == N as u32
    })
    .await;
    assert_eq!(refused().await, N);

    let (code, out) = dlq(&d.settings, &["redrive"]).await;
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(
        out,
        format!("{N} command(s) moved back to {fq}, each once ({N} in {dead} when it started)\n")
    );
    eventually(
        Duration::from_secs(30),
        "every command dead again",
        || async { refused().await >= 2 * N && depth(dead.clone()).await == N as u32 },
    )
    .await;
    // Exactly one more call each: nothing was moved twice.
    assert_eq!(refused().await, 2 * N);
    assert_eq!(depth(fq.clone()).await, 0);

    let (code, out) = dlq(&d.settings, &["redrive", "--limit", "5"]).await;
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(
        out,
        format!("5 command(s) moved back to {fq}, each once ({N} in {dead} when it started)\n")
    );
    eventually(Duration::from_secs(30), "the five dead again", || async {
        refused().await >= 2 * N + 5 && depth(dead.clone()).await == N as u32
    })
    .await;
    assert_eq!(refused().await, 2 * N + 5);

    // Each answer is logged as its one-line form, not as a Rust value.
    let answered: Vec<Value> = d.workers[worker]
        .as_mut()
        .unwrap()
        .history()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["message"] == "platform answered")
        .collect();
    assert_eq!(answered.len() as u64, 2 * N + 5);
    for line in &answered {
        assert_eq!(line["level"], "INFO");
        assert_eq!(
            line["outcome"], "permanent failure (code 70101): sub order not found",
            "{line}"
        );
    }
}
