//! The cluster script's nodes, and a push stream that counts what got through.

use crate::support::*;
use lapin::options::BasicGetOptions;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use weibo_relay::settings::Settings;

pub(crate) fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cluster/cluster.sh")
}

/// Nodes started by the script; stopped and removed when dropped.
pub(crate) struct Nodes {
    pub(crate) dir: PathBuf,
    pub(crate) lines: BTreeMap<String, String>,
}

impl Nodes {
    /// Runs `cluster.sh <verb> DIR PORT`; panics with its stderr when it fails.
    pub(crate) fn start(verb: &str, port: u16) -> Self {
        let dir =
            std::env::temp_dir().join(format!("wr-cluster-{}", uuid::Uuid::new_v4().simple()));
        let mut nodes = Self {
            dir,
            lines: BTreeMap::new(),
        };
        let out = Command::new("bash")
            .arg(script())
            .args([verb, nodes.dir.to_str().unwrap(), &port.to_string()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cluster.sh {verb} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        nodes.lines = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        nodes
    }

    pub(crate) fn get(&self, key: &str) -> &str {
        self.lines
            .get(key)
            .unwrap_or_else(|| panic!("cluster.sh printed no {key}: {:?}", self.lines))
    }

    pub(crate) fn node(&self, verb: &str, n: usize) {
        let out = Command::new("bash")
            .arg(script())
            .args([verb, self.dir.to_str().unwrap(), &n.to_string()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cluster.sh {verb} {n}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Nodes {
    /// The node (1 to 3) leading quorum queue `queue`, as node 3 sees it.
    pub(crate) fn leader_of(&self, queue: &str) -> usize {
        let out = Command::new("bash")
            .arg(script())
            .args(["ctl", self.dir.to_str().unwrap(), "3"])
            .args(["list_queues", "name", "leader", "-q"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{queue}\twrc")))
            .and_then(|rest| rest[..1].parse().ok())
            .unwrap_or_else(|| panic!("no leader for {queue} in {text:?}"))
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .args(["stop", self.dir.to_str().unwrap()])
            .output();
    }
}

/// A base port for this run, below the ephemeral range, apart from other runs.
pub(crate) fn base_port(offset: u16) -> u16 {
    26000 + (std::process::id() % 300) as u16 * 20 + offset
}

/// The node (1 to 3) the relay says it is connected to now, from its log.
pub(crate) fn connected_node(logged: &[String], ports: &[u16]) -> Option<usize> {
    logged
        .iter()
        .rev()
        .find(|l| l.contains("broker connected"))
        .and_then(|l| {
            ports
                .iter()
                .position(|p| l.contains(&format!(":{p}/")))
                .map(|i| i + 1)
        })
}

/// Pushes a fresh order every 25 ms until stopped; every answer with its time.
pub(crate) struct PushStream {
    pub(crate) answers: Arc<Mutex<Vec<(Instant, u16, String)>>>,
    pub(crate) stop: tokio_util::sync::CancellationToken,
}

impl PushStream {
    pub(crate) fn start(address: String) -> Self {
        let answers = Arc::new(Mutex::new(Vec::new()));
        let stop = tokio_util::sync::CancellationToken::new();
        let (a, s) = (answers.clone(), stop.clone());
        tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap();
            while !s.is_cancelled() {
                let (body, id) = valid_form_push();
                let status = client
                    .post(format!("http://{address}/weibo/push"))
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(body)
                    .send()
                    .await
                    .map_or(0, |r| r.status().as_u16());
                a.lock().unwrap().push((Instant::now(), status, id));
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        });
        Self { answers, stop }
    }

    /// The longest stretch from `since` in which no push was stored: between the answers of
    /// two consecutive 200s, whether the pushes between them were refused or kept waiting.
    pub(crate) fn longest_gap(&self, since: Instant) -> Duration {
        let answers = self.answers.lock().unwrap();
        let mut last = since;
        let mut longest = Duration::ZERO;
        for (at, _, _) in answers
            .iter()
            .filter(|(at, s, _)| *at >= since && *s == 200)
        {
            longest = longest.max(at.duration_since(last));
            last = *at;
        }
        longest
    }

    /// The most answers other than 200 in a row, from `since`.
    pub(crate) fn longest_refused_run(&self, since: Instant) -> usize {
        let answers = self.answers.lock().unwrap();
        let (mut run, mut longest) = (0, 0);
        for (_, status, _) in answers.iter().filter(|(at, _, _)| *at >= since) {
            run = if *status == 200 { 0 } else { run + 1 };
            longest = longest.max(run);
        }
        longest
    }

    pub(crate) fn accepted(&self) -> Vec<String> {
        self.answers
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, s, _)| *s == 200)
            .map(|(_, _, id)| id.clone())
            .collect()
    }

    /// How many answers of each status since `since`.
    pub(crate) fn statuses_since(&self, since: Instant) -> BTreeMap<u16, usize> {
        let mut out = BTreeMap::new();
        for (_, s, _) in self
            .answers
            .lock()
            .unwrap()
            .iter()
            .filter(|(at, _, _)| *at >= since)
        {
            *out.entry(*s).or_default() += 1;
        }
        out
    }

    pub(crate) fn count_since(&self, since: Instant, status: u16) -> usize {
        self.answers
            .lock()
            .unwrap()
            .iter()
            .filter(|(at, s, _)| *at >= since && *s == status)
            .count()
    }
}

/// Counts outcomes taken from `queue` into `got`; true once `want` were seen.
pub(crate) async fn got_outcomes(
    channel: &lapin::Channel,
    queue: &str,
    got: &mut usize,
    want: usize,
) -> bool {
    while let Ok(Some(m)) = channel
        .basic_get(queue.into(), BasicGetOptions { no_ack: true })
        .await
    {
        assert_eq!(m.delivery.routing_key.as_str(), "fulfilment.succeeded");
        *got += 1;
    }
    *got >= want
}

/// A receiver against the TLS node with `tls` settings: ready (and storing) or not.
pub(crate) async fn receiver_over_tls(settings: &Settings) -> (bool, Vec<String>) {
    let toml = relay_toml(settings);
    let mut relay = RelayProcess::start(BIN, "receiver", &toml, "info");
    let deadline = Instant::now() + Duration::from_secs(10);
    let url_ready = format!("http://{}/readyz", relay.address);
    let mut ready = false;
    // Ready, or refused (the relay logs each failed attempt), whichever comes first.
    while Instant::now() < deadline {
        if reqwest::get(&url_ready)
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            ready = true;
            break;
        }
        if relay
            .history()
            .iter()
            .any(|l| l.contains("broker connection failed"))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stored = if ready {
        let (body, _) = valid_form_push();
        relay.post_form(body).await == 200
    } else {
        false
    };
    let (_, lines) = relay.signal("TERM").await;
    (ready && stored, lines)
}
