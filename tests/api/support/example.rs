//! A consumer example run as a person runs it: its interpreter, its dependencies, its summary.

use crate::support::*;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

pub(crate) const ORDERS: usize = 20;
pub(crate) const CLOSE_EVERY: usize = 10;
/// What the example prints at the end: 2 copies of the first event and 1 of its outcome were
/// injected, every 10th order is closed.
pub(crate) const SUMMARY: &str =
    "summary: orders=20 finished=18 closed=2 failed=0 duplicate_events=2 duplicate_outcomes=1";

pub(crate) fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The cargo target directory this test runs from (the test binary is in `<target>/.../deps`).
pub(crate) fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    deps.parent().and_then(Path::parent).unwrap().to_path_buf()
}

/// Runs a set-up step; on failure, panics with what it printed and what to install.
pub(crate) fn run(what: &str, command: &mut Command, hint: &str) {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot start it ({e}); {hint}"));
    assert!(
        out.status.success(),
        "{what} failed ({}); {hint}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `<target>/examples-venv/bin/python` with examples/python/requirements.txt installed;
/// installs again only when the requirements change. Once per test process.
pub(crate) fn python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let venv = target_dir().join("examples-venv");
        let python = venv.join("bin/python");
        let requirements = repo().join("examples/python/requirements.txt");
        let wanted = std::fs::read_to_string(&requirements).unwrap();
        let stamp = venv.join("requirements.installed");
        if std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) {
            return python;
        }
        let hint = "the Python example needs python3 with venv (Debian: apt-get install python3-venv) and PyPI";
        if !python.exists() {
            run("python3 -m venv", Command::new("python3").arg("-m").arg("venv").arg(&venv), hint);
        }
        run(
            "pip install -r examples/python/requirements.txt",
            Command::new(&python)
                .args(["-m", "pip", "install", "-q", "--disable-pip-version-check", "-r"])
                .arg(&requirements),
            hint,
        );
        std::fs::write(&stamp, wanted).unwrap();
        python
    })
}

/// examples/node with its locked dependencies installed (`npm ci` again only when the lock
/// changes). Once per test process.
pub(crate) fn node_example() -> &'static Path {
    static NODE: OnceLock<PathBuf> = OnceLock::new();
    NODE.get_or_init(|| {
        let dir = repo().join("examples/node");
        let lock = std::fs::read_to_string(dir.join("package-lock.json")).unwrap();
        let stamp = dir.join("node_modules/.installed-lock");
        if std::fs::read_to_string(&stamp).ok().as_deref() != Some(lock.as_str()) {
            run(
                "npm ci in examples/node",
                Command::new("npm")
                    .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                    .current_dir(&dir),
                "the Node example needs node >= 18 with npm (Debian: apt-get install nodejs npm) and the npm registry",
            );
            std::fs::write(&stamp, lock).unwrap();
        }
        dir
    })
}

/// Deletes the example's own queues when dropped, even when the test panicked.
/// The example as a child process, its output lines collected; killed when dropped.
pub(crate) struct Example {
    pub(crate) child: Option<std::process::Child>,
    pub(crate) kill: Option<KillOnDrop>,
    pub(crate) lines: mpsc::Receiver<String>,
    pub(crate) seen: Arc<Mutex<Vec<String>>>,
}

impl Example {
    pub(crate) fn start(mut command: Command) -> Self {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the example starts");
        let kill = KillOnDrop::new(child.id());
        let (tx, lines) = mpsc::channel();
        let seen = Arc::new(Mutex::new(Vec::new()));
        for pipe in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let (tx, seen) = (tx.clone(), seen.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    seen.lock().unwrap().push(line.clone());
                    let _ = tx.send(line);
                }
            });
        }
        Self {
            child: Some(child),
            kill: Some(kill),
            lines,
            seen,
        }
    }

    pub(crate) fn output(&self) -> String {
        self.seen.lock().unwrap().join("\n")
    }

    /// Waits for a line starting with `prefix`.
    pub(crate) fn wait_for(&self, prefix: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with(prefix) => return line,
                Ok(_) => {}
                Err(_) => panic!(
                    "the example printed no '{prefix}' line within {within:?}; it printed:\n{}",
                    self.output()
                ),
            }
        }
    }

    /// Waits for the exit; panics (the guard then kills it) when it takes longer than `within`.
    pub(crate) async fn exit(mut self, within: Duration) -> (std::process::ExitStatus, String) {
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                // Waited for: nothing left to kill (its pid may be reused).
                if let Some(kill) = self.kill.take() {
                    kill.disarm();
                }
                // Let the readers take the last lines.
                tokio::time::sleep(Duration::from_millis(50)).await;
                return (status, self.output());
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the example did not finish within {within:?}; it printed:\n{}",
                    self.output()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
