//! Reading a signed request the sandbox recorded, and a host that floods its answer.

use crate::support::{APPID, SIGN_KEY};
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use weibo_relay::signature;

pub(crate) const HOUR: Duration = Duration::from_secs(3600);

pub(crate) fn params(request: &Value) -> Vec<(String, String)> {
    request["params"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect()
}

pub(crate) fn assert_signed(request: &Value, endpoint: &str, expected_keys: &[&str]) {
    assert_eq!(request["endpoint"], endpoint);
    let p = params(request);
    let keys: BTreeSet<&str> = p.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, expected_keys.iter().copied().collect());
    let get = |k: &str| p.iter().find(|(key, _)| key == k).unwrap().1.clone();
    assert_eq!(get("appid"), APPID);
    assert_eq!(get("sign_type"), "md5");
    assert_eq!(get("access_token"), "[redacted]", "the token was sent");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let ts: u64 = get("timestamp").parse().unwrap();
    assert!(now.abs_diff(ts) < 60, "timestamp is unix seconds");
    // The sign covers everything but sign, sign_type and access_token.
    let signed: Vec<(&str, &str)> = p
        .iter()
        .filter(|(k, _)| !["sign", "sign_type", "access_token"].contains(&k.as_str()))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(get("sign"), signature::sign(signed, SIGN_KEY));
}

/// A host that answers every request with `head` and then `body_bytes` bytes of JSON-ish
/// padding, or until the client goes.
pub(crate) async fn flooding_host(head: String, body_bytes: usize) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let head = head.clone();
            tokio::spawn(async move {
                let mut request = vec![0u8; 65536];
                let _ = socket.read(&mut request).await;
                socket.write_all(head.as_bytes()).await?;
                socket.write_all(b"{\"code\":0,\"msg\":\"").await?;
                let chunk = vec![b'a'; 64 * 1024];
                let mut sent = 0;
                while sent < body_bytes {
                    socket.write_all(&chunk).await?;
                    sent += chunk.len();
                }
                socket.write_all(b"\"}").await
            });
        }
    });
    base
}
