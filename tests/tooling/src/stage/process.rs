//! A relay as a process of its own: the real binary, one role, a configuration file, its log
//! lines collected. For tests and tools that must kill a relay for real (SIGKILL, SIGTERM),
//! run several, or read what it logs. It panics, showing what the process logged, where a test
//! harness should: a relay that never comes up, or never becomes ready.

use std::path::Path;
use std::time::{Duration, Instant};
use weibo_relay::clock::Later;

use super::ConfigFile;

/// The real binary, running one role with a config file, its log lines collected.
pub struct RelayProcess {
    pub address: String,
    child: Option<std::process::Child>,
    lines: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
    _config: ConfigFile,
}

impl RelayProcess {
    /// Starts `<binary> <role> --config` with JSON logs; returns once it logged its address.
    pub fn start(binary: impl AsRef<Path>, role: &str, toml: &str, rust_log: &str) -> Self {
        Self::start_logging(binary, role, toml, rust_log, true)
    }

    /// Like [`start`](Self::start), with JSON or text logs; lines are read as bytes, so an
    /// invalid or escape-laden line is still seen as it was written.
    pub fn start_logging(
        binary: impl AsRef<Path>,
        role: &str,
        toml: &str,
        rust_log: &str,
        json: bool,
    ) -> Self {
        Self::try_start_logging(binary, role, toml, rust_log, json).unwrap_or_else(|failed| {
            panic!(
                "relay never logged 'listening'; it logged:\n{}",
                failed.logged.join("\n")
            )
        })
    }

    /// [`start`](Self::start) for a caller that can try again, say on a port another process
    /// took in the meantime: a relay that exits or stays silent for 20 s is an error holding
    /// every line it wrote.
    pub fn try_start(
        binary: impl AsRef<Path>,
        role: &str,
        toml: &str,
        rust_log: &str,
    ) -> Result<Self, NeverListened> {
        Self::try_start_logging(binary, role, toml, rust_log, true)
    }

    fn try_start_logging(
        binary: impl AsRef<Path>,
        role: &str,
        toml: &str,
        rust_log: &str,
        json: bool,
    ) -> Result<Self, NeverListened> {
        use std::io::{BufRead, BufReader};
        use std::process::{Command, Stdio};
        let config = ConfigFile::with_text(toml).expect("the configuration file written");
        let mut child = Command::new(binary.as_ref())
            .args([role, "--config"])
            .arg(config.path())
            .env("WEIBO_RELAY_LOG_FORMAT", if json { "json" } else { "text" })
            .env("RUST_LOG", rust_log)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the relay binary starts");
        let (tx, lines) = std::sync::mpsc::channel::<String>();
        for pipe in [
            Box::new(child.stdout.take().expect("piped stdout")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().expect("piped stderr")),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).split(b'\n').map_while(Result::ok) {
                    let _ = tx.send(String::from_utf8_lossy(&line).into_owned());
                }
            });
        }
        // Only the readers hold a sender now: a process that exits disconnects at once.
        drop(tx);
        let mut seen = Vec::new();
        let address = loop {
            let Ok(line) = lines.recv_timeout(Duration::from_secs(20)) else {
                let _ = child.kill();
                let _ = child.wait();
                return Err(NeverListened { logged: seen });
            };
            seen.push(line.clone());
            if json {
                // A line that is not JSON (the CLI's one-line error on stderr) is kept for
                // the failure's report, not parsed.
                let Ok(entry) = serde_json::from_str::<serde_json::Value>(&line) else {
                    continue;
                };
                if entry["message"] == "listening" {
                    break entry["address"]
                        .as_str()
                        .expect("an address in the listening line")
                        .to_owned();
                }
            } else if let Some(rest) = line.split(" listening address=").nth(1) {
                break rest
                    .split_whitespace()
                    .next()
                    .expect("an address after listening")
                    .to_owned();
            }
        };
        Ok(Self {
            address,
            child: Some(child),
            lines,
            seen,
            _config: config,
        })
    }

    /// What the process logged since the last call (and since it became ready).
    pub fn logged(&self) -> Vec<String> {
        self.lines.try_iter().collect()
    }

    /// Every line logged so far, from the start (the lines before "listening" too).
    pub fn history(&mut self) -> &[String] {
        self.seen.extend(self.lines.try_iter());
        &self.seen
    }

    /// Kills the process without waiting (for clean-up in `Drop`).
    pub fn kill_now(self) {
        drop(self);
    }

    /// The process id, for /proc.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, std::process::Child::id)
    }

    /// Waits until `/readyz` answers 200 (broker connected, tokens held); on time-out the
    /// panic shows what the process logged.
    pub async fn wait_ready(&self) {
        let url = format!("http://{}/readyz", self.address);
        let deadline = Instant::now().later(Duration::from_secs(10));
        while !reqwest::get(&url).await.is_ok_and(|r| r.status() == 200) {
            if Instant::now() >= deadline {
                let logged: Vec<String> = self.lines.try_iter().collect();
                panic!(
                    "relay process not ready within 10 s; it logged:\n{}",
                    logged.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Posts a form push to the default push path; returns the status.
    pub async fn post_form(&self, body: String) -> u16 {
        reqwest::Client::new()
            .post(format!("http://{}/weibo/push", self.address))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .expect("push request completes")
            .status()
            .as_u16()
    }

    /// Sends `signal` (TERM, KILL), waits for the exit, returns it with every log line.
    pub async fn signal(mut self, signal: &str) -> (std::process::ExitStatus, Vec<String>) {
        let status = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let mut child = self
            .child
            .take()
            .expect("the process was not waited for yet");
        let exit = tokio::task::spawn_blocking(move || child.wait().unwrap())
            .await
            .unwrap();
        let (tx, empty) = std::sync::mpsc::channel();
        drop(tx);
        let lines = std::mem::replace(&mut self.lines, empty);
        self.seen.extend(lines.iter());
        (exit, std::mem::take(&mut self.seen))
    }
}

impl Drop for RelayProcess {
    /// A test that fails half-way must not leave the process running.
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A relay process that exited or stayed silent before it logged "listening".
#[derive(Debug)]
pub struct NeverListened {
    /// Every line it wrote, stdout and stderr.
    pub logged: Vec<String>,
}

impl NeverListened {
    /// It could not bind its address: a port chosen in advance was taken meanwhile.
    pub fn address_in_use(&self) -> bool {
        self.logged
            .iter()
            .any(|line| line.contains("Address already in use"))
    }
}

/// SIGKILLs a spawned process when dropped, unless disarmed after it was waited for: a test
/// that fails half-way leaves nothing running.
pub struct KillOnDrop(Option<u32>);

impl KillOnDrop {
    /// Guards the process `pid`.
    pub fn new(pid: u32) -> Self {
        Self(Some(pid))
    }

    /// The process was waited for: nothing to kill.
    pub fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
}
