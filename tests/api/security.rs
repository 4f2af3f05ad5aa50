//! The relay as an attacker and a clumsy producer meet it: slow clients, forged log lines,
//! poison commands, replays, redirects.

use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::helpers::*;
use crate::rig::{finish, header_text, text, RigOptions, WorkerRig};

/// The relay's resident memory, from /proc.
fn rss_kib(pid: u32) -> u64 {
    proc_status_kib(pid, "VmRSS").expect("VmRSS in /proc/PID/status")
}

/// A client that sends all but the last bytes of a full-size body, then stalls.
async fn slow_client(addr: String, declared: usize, sent: usize) -> Option<TcpStream> {
    let mut stream = TcpStream::connect(addr).await.ok()?;
    let head = format!(
        "POST /weibo/push HTTP/1.1\r\nHost: relay\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {declared}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.ok()?;
    stream.write_all(&vec![b'a'; sent]).await.ok()?;
    Some(stream)
}

#[tokio::test]
async fn a_slow_client_flood_is_bounded_in_memory_and_pushes_still_get_through() {
    const CLIENTS: usize = 600;
    const MAX_CONNECTIONS: usize = 200;
    let mut settings = test_settings(AMQP_URL);
    settings.http.max_body_bytes = 65536.try_into().unwrap();
    settings.http.body_timeout_ms = 3000.try_into().unwrap();
    settings.http.max_connections = (MAX_CONNECTIONS as u64).try_into().unwrap();
    let stage = bare_stage(settings).await;
    let relay = stage.spawn(BIN, "receiver", "info");
    relay.wait_ready().await;
    let pid = relay.pid();
    let before = rss_kib(pid);

    let flood: Vec<_> = (0..CLIENTS)
        .map(|_| tokio::spawn(slow_client(relay.address.clone(), 65_536, 65_000)))
        .collect();
    let streams: Vec<_> = futures_util::future::join_all(flood).await;
    let connected = streams.iter().filter(|s| matches!(s, Ok(Some(_)))).count();
    // A legitimate push while the flood holds every connection the relay serves and 400 more
    // wait behind it: it waits its turn (each slow client is cut off after the body timeout)
    // and is answered; it is neither refused nor lost.
    let started = Instant::now();
    let address = relay.address.clone();
    let push = tokio::spawn(async move {
        let (body, _) = valid_form_push();
        reqwest::Client::new()
            .post(format!("http://{address}/weibo/push"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map(|r| r.status().as_u16())
    });
    let mut peak = rss_kib(pid);
    while !push.is_finished() && started.elapsed() < Duration::from_secs(30) {
        peak = peak.max(rss_kib(pid));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = push.await.unwrap().unwrap();
    let waited = started.elapsed();
    drop(streams);
    // Once the flood is gone, the memory it used goes back to the system, with no traffic.
    let mut after = rss_kib(pid);
    let settle_until = Instant::now() + Duration::from_secs(20);
    while after > before + 8 * 1024 && Instant::now() < settle_until {
        tokio::time::sleep(Duration::from_millis(200)).await;
        after = rss_kib(pid);
    }
    eprintln!(
        "slow-client flood: {connected} connected; RSS before {before} KiB, peak {peak} KiB, after {after} KiB; push answered {status} after {waited:?}"
    );
    let (_, lines) = relay.signal("TERM").await;
    assert_eq!(status, 200, "{lines:?}");
    assert_eq!(connected, CLIENTS);
    // Three rounds of 200 slow clients, 3 s each, at most, are ahead of it.
    assert!(waited < Duration::from_secs(15), "{waited:?}");
    // Each served connection holds about one body (64 KiB) and actix's buffers (together under
    // 256 KiB in this debug build): the cap bounds it, and the 400 waiting cost nothing here.
    assert!(
        peak < before + (MAX_CONNECTIONS as u64) * 256,
        "peak {peak} KiB from {before} KiB"
    );
    assert!(
        after <= before + 8 * 1024,
        "after {after} KiB from {before} KiB"
    );
}

/// Pushes `n` fresh signed pushes at concurrency 16 while `during` runs; returns every status.
async fn pushes_during<F: std::future::Future>(app: &TestApp, n: usize, during: F) -> Vec<u16> {
    use futures_util::StreamExt;
    let pushes = futures_util::stream::iter(0..n)
        .map(|_| async {
            let (body, _) = valid_form_push();
            app.post_form(body).await.status
        })
        .buffer_unordered(16)
        .collect::<Vec<u16>>();
    let (statuses, _) = tokio::join!(pushes, during);
    statuses
}

fn table(entries: Vec<(&str, lapin::types::AMQPValue)>) -> lapin::types::FieldTable {
    let mut t = lapin::types::FieldTable::default();
    for (k, v) in entries {
        t.insert(k.into(), v);
    }
    t
}

#[tokio::test]
async fn poison_commands_neither_loop_nor_cost_the_receiver_an_answer() {
    use lapin::types::AMQPValue;
    use weibo_relay::startup::Roles;
    use weibo_relay::worker::{seal_attempts, SEALED_ATTEMPTS};
    let rig = WorkerRig::start_with(RigOptions {
        roles: Roles::Serve,
        ..RigOptions::default()
    })
    .await;
    let ids = rig.create_orders(5).await;
    let body = |i: usize| finish(&ids[i]).to_string().into_bytes();
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let producers = async {
        // A count that wraps a u32 add, as a number and as text.
        rig.send_with_headers(
            body(0),
            table(vec![("x-attempts", AMQPValue::LongUInt(u32::MAX))]),
        )
        .await;
        rig.send_with_headers(body(1), table(vec![("x-attempts", text("4294967295"))]))
            .await;
        // A forged seal.
        rig.send_with_headers(
            body(2),
            table(vec![(
                SEALED_ATTEMPTS,
                text(&format!("4294967295:{}", "0".repeat(32))),
            )]),
        )
        .await;
        // A genuine count at the limit (max_attempts 4): dead at once, no call.
        rig.send_with_headers(
            body(3),
            table(vec![(
                SEALED_ATTEMPTS,
                seal_attempts(4, &body(3), SIGN_KEY.as_bytes()),
            )]),
        )
        .await;
        // 100 KB of headers a republish would carry past the broker's frame size.
        rig.send_with_headers(
            body(4),
            table(vec![
                ("x-huge", text(&"x".repeat(100_000))),
                ("traceparent", text(traceparent)),
            ]),
        )
        .await;
    };
    let statuses = pushes_during(&rig.app, 150, producers).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");

    let outcomes = rig.outcomes(5).await;
    let mut succeeded: Vec<&str> = outcomes
        .iter()
        .filter(|(key, _)| key == "fulfilment.succeeded")
        .map(|(_, o)| {
            assert_eq!(o["attempts"], 1, "{o}");
            o["command"]["sub_order_id"].as_str().unwrap()
        })
        .collect();
    succeeded.sort();
    let mut expected: Vec<&str> = [0, 1, 2, 4].iter().map(|&i| ids[i].as_str()).collect();
    expected.sort();
    assert_eq!(succeeded, expected);
    let (_, failed) = outcomes
        .iter()
        .find(|(key, _)| key == "fulfilment.failed")
        .expect("the command at its limit failed");
    assert_eq!(failed["command"]["sub_order_id"], ids[3].as_str());
    assert_eq!(failed["attempts"], 4);
    let (dead, headers) = rig.next_dead().await;
    assert_eq!(dead, finish(&ids[3]));
    assert!(
        header_text(&headers, "x-death-reason").contains("already made 4 attempts"),
        "{headers:?}"
    );
    // Exactly one platform call per healthy command: no loop, no call for the dead one.
    let calls = &rig.counters().await["calls"]["retailerFinishSub"];
    assert_eq!(calls, &serde_json::json!({"0": 4}), "{calls}");
    assert_eq!(rig.order_state(&ids[3]).await, 201);
}

#[tokio::test]
async fn queues_deleted_under_the_worker_cost_neither_the_receiver_nor_a_command() {
    use lapin::options::QueueDeleteOptions;
    use weibo_relay::startup::Roles;
    let rig = WorkerRig::start_with(RigOptions {
        roles: Roles::Serve,
        ..RigOptions::default()
    })
    .await;
    let fq = rig.app.settings.amqp.fulfilment_queue.clone();
    let dead = format!("{fq}.dead");
    let chaos = async {
        // The dead queue goes: a poison command's next home is refused (NO_ROUTE).
        rig.app
            .channel
            .queue_delete(dead.as_str().into(), QueueDeleteOptions::default())
            .await
            .unwrap();
        rig.send_raw(b"not a command".to_vec()).await;
        eventually(Duration::from_secs(15), "poison dead-lettered", || async {
            depth(&rig.app, &dead).await == Some(1)
        })
        .await;
        // The work queue goes: the broker cancels the worker's consumer.
        rig.app
            .channel
            .queue_delete(fq.as_str().into(), QueueDeleteOptions::default())
            .await
            .unwrap();
        eventually(
            Duration::from_secs(15),
            "work queue declared again",
            || async { depth(&rig.app, &fq).await.is_some() },
        )
        .await;
    };
    let statuses = pushes_during(&rig.app, 200, chaos).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    // And the worker consumes again.
    let id = rig.create_orders(1).await.remove(0);
    rig.send(finish(&id)).await;
    let outcomes = rig.outcomes(1).await;
    assert_eq!(outcomes[0].0, "fulfilment.succeeded", "{outcomes:?}");
    assert_eq!(rig.order_state(&id).await, 301);
}

#[tokio::test]
async fn padded_and_extended_replays_are_published_once_with_exactly_the_signed_params() {
    let data = order_data(&unique_order_id(), 201);
    let original = signed_fields(APPID, SIGN_KEY, "2", &data, now());
    let replays: Vec<Vec<(String, String)>> = vec![
        original.clone(),
        with_field(&original, "data", &format!("{data}  \n")),
        with_field(
            &original,
            "access_token",
            "2.00attackers-own-token-000000000",
        ),
        with_field(&original, "remark", ""),
        with_field(
            &with_field(
                &original,
                "nonce",
                &format!(" {}\t", field(&original, "nonce")),
            ),
            "access_token",
            "x",
        ),
    ];
    let event_id = {
        use sha2::{Digest, Sha256};
        hex::encode(&Sha256::digest(format!("{APPID}\n2\n{data}").as_bytes())[..16])
    };
    let signed_params: serde_json::Map<String, serde_json::Value> = original
        .iter()
        .filter(|(k, _)| k != "sign" && k != "sign_type")
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();

    // With the in-process dedup: one message.
    let app = spawn_app().await;
    for fields in &replays {
        app.post_form(form(fields)).await.assert_success();
    }
    let metrics = app.get("/metrics").await.body;
    assert!(
        metrics.contains("weibo_relay_pushes_total{outcome=\"accepted\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("weibo_relay_pushes_total{outcome=\"duplicate\"} 4"),
        "{metrics}"
    );
    let msg = app.next_event().await;
    assert_eq!(app.queue_depth().await, 0);
    let body: serde_json::Value = serde_json::from_slice(&msg.delivery.data).unwrap();
    assert_eq!(
        body["params"],
        serde_json::Value::Object(signed_params.clone())
    );
    assert_eq!(body["event_id"], event_id);

    // Without it (another replica, a restart): every copy carries the same id and the same
    // params, so consumers deduplicating on message_id see one event.
    let mut settings = test_settings(AMQP_URL);
    settings.push.dedup_capacity = 0.try_into().unwrap();
    let app = spawn_app_with(settings, true).await;
    for fields in &replays {
        app.post_form(form(fields)).await.assert_success();
    }
    for _ in &replays {
        let msg = app.next_event().await;
        assert_eq!(
            msg.delivery
                .properties
                .message_id()
                .as_ref()
                .map(|m| m.as_str()),
            Some(event_id.as_str())
        );
        let body: serde_json::Value = serde_json::from_slice(&msg.delivery.data).unwrap();
        assert_eq!(
            body["params"],
            serde_json::Value::Object(signed_params.clone())
        );
        assert!(!String::from_utf8_lossy(&msg.delivery.data).contains("attacker"));
    }
}

fn field<'a>(fields: &'a [(String, String)], key: &str) -> &'a str {
    &fields.iter().find(|(k, _)| k == key).unwrap().1
}

/// Messages in `queue`, or `None` when it does not exist; a channel of its own each time,
/// since asking about a missing queue closes the channel.
async fn depth(app: &TestApp, queue: &str) -> Option<u32> {
    use lapin::options::QueueDeclareOptions;
    let probe = app.connection().create_channel().await.unwrap();
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let found = probe
        .queue_declare(queue.into(), passive, lapin::types::FieldTable::default())
        .await
        .ok()
        .map(|q| q.message_count());
    let _ = probe.close(200, "probe".into()).await;
    found
}

/// `fields` with `key` set to `value` (added when absent), the signature left as it was.
fn with_field(fields: &[(String, String)], key: &str, value: &str) -> Vec<(String, String)> {
    let mut out = fields.to_vec();
    match out.iter_mut().find(|(k, _)| k == key) {
        Some(slot) => slot.1 = value.to_owned(),
        None => out.insert(out.len() - 1, (key.to_owned(), value.to_owned())),
    }
    out
}

/// A server answering every request `status` with `Location: location`, counting requests.
async fn redirector(
    status: u16,
    location: String,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    serve_raw(move || {
        format!("HTTP/1.1 {status} Moved\r\nLocation: {location}\r\nReferrer-Policy: unsafe-url\r\nContent-Length: 11\r\nConnection: close\r\n\r\n{{\"code\":0}}")
    })
    .await
}

/// A server that must never be reached: it answers `{"code":0}` and counts connections.
async fn trap() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    serve_raw(|| {
        let body = r#"{"code":0,"access_token":"2.00stolen","expires_in":7200}"#;
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    })
    .await
}

async fn serve_raw(
    answer: impl Fn() -> String + Send + Sync + 'static,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let count = std::sync::Arc::new(AtomicUsize::new(0));
    let counted = count.clone();
    let answer = std::sync::Arc::new(answer);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let _ = socket.read(&mut buf).await;
                let _ = socket.write_all(answer().as_bytes()).await;
            });
        }
    });
    (base, count)
}

#[tokio::test]
async fn a_redirecting_token_endpoint_gets_nothing_followed_and_no_token_is_taken() {
    use std::sync::atomic::Ordering;
    let (trap_url, trapped) = trap().await;
    let (redirect, answered) = redirector(302, format!("{trap_url}/oauth2/shop/authorize")).await;
    let rig = WorkerRig::start_with(RigOptions {
        wait_ready: false,
        adjust: Box::new(move |s, _| s.weibo.oauth_base = redirect.parse().unwrap()),
        ..RigOptions::default()
    })
    .await;
    let counter = |line: String| -> u64 {
        line.rsplit(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    eventually(
        Duration::from_secs(15),
        "two refused token requests",
        || async {
            counter(
                rig.metric("weibo_relay_token_refresh_failures_total{appid=\"100023\"}")
                    .await,
            ) >= 2
        },
    )
    .await;
    assert!(answered.load(Ordering::SeqCst) >= 2);
    assert_eq!(
        trapped.load(Ordering::SeqCst),
        0,
        "the redirect was followed"
    );
    let ready = rig.app.get("/readyz").await;
    ready.assert_refused(503, 50301);
    assert_eq!(
        counter(
            rig.metric("weibo_relay_token_refreshes_total{appid=\"100023\"}")
                .await
        ),
        0
    );
}

#[tokio::test]
async fn a_redirecting_order_interface_gets_nothing_followed_and_the_command_is_not_done() {
    use std::sync::atomic::Ordering;
    let (trap_url, trapped) = trap().await;
    let (redirect, answered) = redirector(307, format!("{trap_url}/steal")).await;
    let rig = WorkerRig::start_with(RigOptions {
        max_attempts: 2,
        adjust: Box::new(move |s, _| s.weibo.api_base = redirect.parse().unwrap()),
        ..RigOptions::default()
    })
    .await;
    let id = rig.create_orders(1).await.remove(0);
    rig.send(finish(&id)).await;
    let (dead, headers) = rig.next_dead().await;
    assert_eq!(dead, finish(&id));
    let reason = header_text(&headers, "x-death-reason");
    assert!(
        reason.contains("HTTP 307 redirect to \"127.0.0.1\" not followed"),
        "{reason}"
    );
    assert!(!headers.inner().contains_key("x-last-code"), "{headers:?}");
    let outcomes = rig.outcomes(1).await;
    assert_eq!(outcomes[0].0, "fulfilment.failed");
    assert_eq!(answered.load(Ordering::SeqCst), 2, "one call per attempt");
    assert_eq!(
        trapped.load(Ordering::SeqCst),
        0,
        "the redirect was followed"
    );
    assert_eq!(rig.order_state(&id).await, 201);
}

#[tokio::test]
async fn names_from_a_request_cannot_forge_flood_or_colour_the_log() {
    let mut settings = test_settings(AMQP_URL);
    settings.http.max_body_bytes = 65536.try_into().unwrap();
    let stage = bare_stage(settings).await;
    // Text logs: the format a forged line would fool.
    let toml = relay_toml(stage.settings());
    let relay = RelayProcess::start_logging(BIN, "receiver", &toml, "info", false);
    relay.wait_ready().await;
    let client = reqwest::Client::new();
    let post = |body: String| {
        client
            .post(format!("http://{}/weibo/push", relay.address))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    let long = "k".repeat(30_000);
    for key in [
        "a%0A2026-11-25T00:00:00Z  INFO forged: push stored",
        "%1B%5B31mred%1B%5B0m",
        long.as_str(),
    ] {
        let answer = post(format!("{key}=1&{key}=2")).await.unwrap();
        assert_eq!(answer.status(), 400);
        let body = answer.text().await.unwrap();
        assert!(body.len() < 300, "{} bytes", body.len());
        assert!(body.contains("is given twice"), "{body}");
        assert!(!body.contains('\n') && !body.contains('\u{1b}'), "{body}");
    }
    // Values a parser quotes back: a JSON body of the wrong type, a `data` that is not JSON.
    let json_string = format!("\"{}\\n\u{1b}[31m\"", "v".repeat(60_000));
    let answer = client
        .post(format!("http://{}/weibo/push", relay.address))
        .header("content-type", "application/json")
        .body(json_string)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 400);
    let body = answer.text().await.unwrap();
    assert!(body.len() < 400, "{} bytes: {}", body.len(), &body[..400]);
    assert!(body.contains("not a flat JSON object"), "{body}");
    assert!(!body.contains('\u{1b}'), "{body}");
    let bad_data = format!(
        "appid=1&type=2&timestamp=1&sign=x&data=%5B{}",
        "x".repeat(30_000)
    );
    let answer = post(bad_data).await.unwrap();
    assert_eq!(answer.status(), 400);
    let body = answer.text().await.unwrap();
    assert!(body.len() < 400, "{} bytes", body.len());
    // A flood of refusals: every one counted, few logged.
    let started = Instant::now();
    for _ in 0..300 {
        assert_eq!(post("appid=1".into()).await.unwrap().status(), 400);
    }
    let elapsed = started.elapsed().as_secs() + 1;
    let metrics = reqwest::get(format!("http://{}/metrics", relay.address))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("weibo_relay_pushes_total{outcome=\"malformed\"} 305"),
        "{metrics}"
    );
    let (_, lines) = relay.signal("TERM").await;
    for line in &lines {
        assert!(line.len() < 2048, "a {}-byte log line", line.len());
        assert!(
            !line.contains('\u{1b}'),
            "an escape sequence in the log: {line:?}"
        );
        assert!(
            !line.starts_with("2026-11-25T00:00:00Z"),
            "a forged line: {line}"
        );
    }
    let refused = lines.iter().filter(|l| l.contains("push refused")).count();
    assert!(
        (3..=10 + 10 * elapsed as usize).contains(&refused),
        "{refused} refusal lines in {elapsed} s"
    );
    assert!(
        lines.iter().any(|l| l.contains("suppressed=")),
        "held-back lines are counted in the next one"
    );
}

/// A RabbitMQ user of one test's own, deleted when dropped (also when the test fails).
struct BrokerUser(String);

impl BrokerUser {
    fn create(name: &str, password: &str, configure: &str, write: &str, read: &str) -> Self {
        let ctl = |args: &[&str]| {
            let out = std::process::Command::new("rabbitmqctl")
                .args(args)
                .output()
                .expect("rabbitmqctl runs");
            assert!(
                out.status.success(),
                "rabbitmqctl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        ctl(&["add_user", name, password]);
        let user = Self(name.to_owned());
        ctl(&["set_permissions", "-p", "/", name, configure, write, read]);
        user
    }
}

impl Drop for BrokerUser {
    fn drop(&mut self) {
        let _ = std::process::Command::new("rabbitmqctl")
            .args(["delete_user", &self.0])
            .output();
    }
}

/// The relay's permissions exactly as README's Security section grants them, its names
/// (`weibo\.`) replaced by this test's own prefix.
fn readme_relay_permissions(prefix: &str) -> [String; 3] {
    let readme = include_str!("../../README.md");
    let line = readme
        .lines()
        .find(|l| l.starts_with("rabbitmqctl set_permissions -p / weibo-relay "))
        .expect("README grants the relay its permissions");
    let quoted: Vec<&str> = line.split('\'').skip(1).step_by(2).collect();
    let ours = prefix.replace('.', "\\.");
    let each = |i: usize| quoted[i].replace("weibo\\.", &ours);
    [each(0), each(1), each(2)]
}

/// Run as a user with only the README's permissions, every part of `serve` works: a push is
/// stored, a command retried through its delay queue and finished, a bad one dead-lettered,
/// the keeper's token announced and a lost state reconciled (read marks and all).
#[tokio::test]
async fn the_relay_needs_no_more_than_the_permissions_readme_grants_it() {
    let user = format!("wr-test-{}", uuid::Uuid::new_v4().simple());
    let password = uuid::Uuid::new_v4().simple().to_string();
    let url = format!("amqp://{user}:{password}@127.0.0.1:5672/%2f");
    let granted: std::sync::Arc<std::sync::Mutex<Option<BrokerUser>>> = Default::default();
    let grant = granted.clone();
    let rig = WorkerRig::start_with(RigOptions {
        amqp_url: url,
        roles: weibo_relay::startup::Roles::Serve,
        adjust: Box::new(move |s, _| {
            let run = s.amqp.events_exchange.trim_end_matches("events");
            let [configure, write, read] = readme_relay_permissions(run);
            assert!(write.contains("amq\\.default"), "{write}");
            *grant.lock().unwrap() = Some(BrokerUser::create(
                &user, &password, &configure, &write, &read,
            ));
            s.reconcile.interval_secs = 1.try_into().unwrap();
            s.reconcile.settle_secs = 1.try_into().unwrap();
        }),
        ..RigOptions::default()
    })
    .await;
    assert!(granted.lock().unwrap().is_some());

    let (body, _) = valid_form_push();
    rig.app.post_form(body).await.assert_success();
    let ids = rig.create_orders(2).await;
    rig.faults(serde_json::json!({"error_rate": 1.0})).await;
    rig.send(finish(&ids[0])).await;
    eventually(Duration::from_secs(20), "a retry", || async {
        rig.metric("weibo_relay_retries_total ").await == "weibo_relay_retries_total 1"
    })
    .await;
    rig.faults(serde_json::json!({})).await;
    let outcomes = rig.outcomes(1).await;
    assert_eq!(outcomes[0].0, "fulfilment.succeeded", "{outcomes:?}");
    rig.send(serde_json::json!({"appid": APPID, "sub_order_id": ids[1], "action": "close"}))
        .await;
    let (_, headers) = rig.next_dead().await;
    assert!(
        header_text(&headers, "x-death-reason").contains("reason"),
        "{headers:?}"
    );
    // The two orders' states no push brought, from reconciliation: each sweep appends its
    // read mark to the event log through the default exchange.
    eventually(Duration::from_secs(20), "two states reconciled", || async {
        let reconciled = rig.metric("weibo_relay_reconciled_events_total ").await;
        reconciled
            .rsplit(' ')
            .next()
            .and_then(|n| n.parse::<u64>().ok())
            >= Some(2)
    })
    .await;
    assert_eq!(
        rig.metric("weibo_relay_reconcile_sweeps_total{outcome=\"failed\"}")
            .await,
        "weibo_relay_reconcile_sweeps_total{outcome=\"failed\"} 0"
    );
    assert!(rig.app.queue_depth().await >= 3);
    assert_eq!(rig.counters().await["tokens_issued"][APPID], 1);

    // An operator's replay as this user, into a queue named from the configured names: its
    // exchange of the time being is named from them too, so these permissions suffice.
    let target = format!("{}.replayed", rig.app.settings.amqp.events_queue);
    rig.app
        .channel
        .queue_declare(
            target.as_str().into(),
            Default::default(),
            Default::default(),
        )
        .await
        .unwrap();
    let _target = queues_deleted_after(&[&target]);
    let options = weibo_relay::event::replay::ReplayOptions {
        since: std::time::SystemTime::now() - Duration::from_secs(3600),
        until: std::time::SystemTime::now(),
        appid: None,
        sub_order_id: None,
        routing_key: Some("order.sub_order.*".parse().unwrap()),
        to_queue: target.clone(),
    };
    let replayed = weibo_relay::event::replay::replay(
        &rig.app.settings,
        &options,
        |_| {},
        &Default::default(),
    )
    .await
    .unwrap();
    assert!(replayed.published >= 3, "{replayed:?}");
    assert_eq!(rig.app.depth_of(&target).await as u64, replayed.published);
}

/// Anyone who can publish commands can publish bad ones: 300 of them are all dead-lettered
/// and counted, while the log gets a burst of lines and then about ten a second.
#[tokio::test]
async fn a_flood_of_bad_commands_is_counted_whole_and_logged_sparingly() {
    const BAD: usize = 300;
    let stage = platform_stage(test_settings(AMQP_URL)).await;
    let settings = stage.settings();
    let relay = stage.spawn(BIN, "worker", "info");
    relay.wait_ready().await;
    let started = Instant::now();
    let conn = lapin::Connection::connect(AMQP_URL, Default::default())
        .await
        .unwrap();
    let channel = conn.create_channel().await.unwrap();
    for i in 0..BAD {
        channel
            .basic_publish(
                "".into(),
                settings.amqp.fulfilment_queue.as_str().into(),
                Default::default(),
                format!("not a command {i}").as_bytes(),
                Default::default(),
            )
            .await
            .unwrap();
    }
    let counted = format!("weibo_relay_dead_letters_total{{cause=\"malformed\"}} {BAD}");
    eventually(
        Duration::from_secs(30),
        "every bad command counted",
        || async {
            reqwest::get(format!("http://{}/metrics", relay.address))
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
                .lines()
                .any(|l| l == counted)
        },
    )
    .await;
    let elapsed = started.elapsed().as_secs() as usize + 1;
    let _ = conn.close(200, "done".into()).await;
    let (_, lines) = relay.signal("TERM").await;
    let logged = lines
        .iter()
        .filter(|l| l.contains("dead-lettering command"))
        .count();
    assert!(
        (1..=10 + 10 * elapsed).contains(&logged),
        "{logged} dead-letter lines for {BAD} commands in {elapsed} s"
    );
}
