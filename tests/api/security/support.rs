//! The attacker's tools: slow clients, redirecting servers, traps, a broker user of its own.

use crate::support::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// The relay's resident memory, from /proc.
pub(crate) fn rss_kib(pid: u32) -> u64 {
    proc_status_kib(pid, "VmRSS").expect("VmRSS in /proc/PID/status")
}

/// A client that sends all but the last bytes of a full-size body, then stalls.
pub(crate) async fn slow_client(addr: String, declared: usize, sent: usize) -> Option<TcpStream> {
    let mut stream = TcpStream::connect(addr).await.ok()?;
    let head = format!(
        "POST /weibo/push HTTP/1.1\r\nHost: relay\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {declared}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.ok()?;
    stream.write_all(&vec![b'a'; sent]).await.ok()?;
    Some(stream)
}

/// Pushes `n` fresh signed pushes at concurrency 16 while `during` runs; returns every status.
pub(crate) async fn pushes_during<F: std::future::Future>(
    app: &TestApp,
    n: usize,
    during: F,
) -> Vec<u16> {
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

pub(crate) fn table(entries: Vec<(&str, lapin::types::AMQPValue)>) -> lapin::types::FieldTable {
    let mut t = lapin::types::FieldTable::default();
    for (k, v) in entries {
        t.insert(k.into(), v);
    }
    t
}

pub(crate) fn field<'a>(fields: &'a [(String, String)], key: &str) -> &'a str {
    &fields.iter().find(|(k, _)| k == key).unwrap().1
}

/// Messages in `queue`, or `None` when it does not exist; a channel of its own each time,
/// since asking about a missing queue closes the channel.
pub(crate) async fn depth(app: &TestApp, queue: &str) -> Option<u32> {
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
pub(crate) fn with_field(
    fields: &[(String, String)],
    key: &str,
    value: &str,
) -> Vec<(String, String)> {
    let mut out = fields.to_vec();
    match out.iter_mut().find(|(k, _)| k == key) {
        Some(slot) => slot.1 = value.to_owned(),
        None => out.insert(out.len() - 1, (key.to_owned(), value.to_owned())),
    }
    out
}

/// A server answering every request `status` with `Location: location`, counting requests.
pub(crate) async fn redirector(
    status: u16,
    location: String,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    serve_raw(move || {
        format!("HTTP/1.1 {status} Moved\r\nLocation: {location}\r\nReferrer-Policy: unsafe-url\r\nContent-Length: 11\r\nConnection: close\r\n\r\n{{\"code\":0}}")
    })
    .await
}

/// A server that must never be reached: it answers `{"code":0}` and counts connections.
pub(crate) async fn trap() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    serve_raw(|| {
        let body = r#"{"code":0,"access_token":"2.00stolen","expires_in":7200}"#;
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    })
    .await
}

pub(crate) async fn serve_raw(
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

/// A RabbitMQ user of one test's own, deleted when dropped (also when the test fails).
pub(crate) struct BrokerUser(String);

impl BrokerUser {
    pub(crate) fn create(
        name: &str,
        password: &str,
        configure: &str,
        write: &str,
        read: &str,
    ) -> Self {
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
pub(crate) fn readme_relay_permissions(prefix: &str) -> [String; 3] {
    let readme = include_str!("../../../README.md");
    let line = readme
        .lines()
        .find(|l| l.starts_with("rabbitmqctl set_permissions -p / weibo-relay "))
        .expect("README grants the relay its permissions");
    let quoted: Vec<&str> = line.split('\'').skip(1).step_by(2).collect();
    let ours = prefix.replace('.', "\\.");
    let each = |i: usize| quoted[i].replace("weibo\\.", &ours);
    [each(0), each(1), each(2)]
}
