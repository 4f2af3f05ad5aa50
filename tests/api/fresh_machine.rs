//! What a newcomer meets first. README's two commands on a machine that lacks what they
//! need: the scripts say exactly what to run (what they do where they can, apt-get or Docker,
//! needs a machine of its own). README's commands use the one build the demo made, and the
//! documents cite only files a reader has.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A directory holding only the basic tools the scripts use (no cargo, sudo, docker, apt-get,
/// rabbitmq-server), removed when dropped.
struct BarePath(PathBuf);

impl BarePath {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("weibo-relay-bare-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let tools = [
            "bash", "sh", "env", "id", "seq", "sleep", "cat", "dirname", "timeout", "sed", "sort",
            "head", "awk",
        ];
        for tool in tools {
            let found = ["/usr/bin", "/bin"]
                .iter()
                .map(|d| Path::new(d).join(tool))
                .find(|p| p.exists())
                .unwrap_or_else(|| panic!("{tool} is on this machine"));
            std::os::unix::fs::symlink(found, dir.join(tool)).unwrap();
        }
        Self(dir)
    }
}

impl Drop for BarePath {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `bash SCRIPT ARGS` from the repository with nothing but `path` and `env`.
fn script(
    path: &BarePath,
    script: &str,
    env: &[(&str, &str)],
) -> (Option<i32>, String, String, Duration) {
    let started = Instant::now();
    let out = Command::new(path.0.join("bash"))
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join(script))
        .env_clear()
        .env("PATH", &path.0)
        .env("HOME", "/nonexistent")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        started.elapsed(),
    )
}

#[test]
fn without_a_way_to_start_rabbitmq_the_script_says_exactly_what_to_run() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let bare = BarePath::new();
    let (code, stdout, stderr, took) = script(
        &bare,
        ".ci/ensure-rabbitmq.sh",
        &[("WEIBO_RELAY_RABBITMQ_PORT", &closed.to_string())],
    );
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert_eq!(
        stderr,
        format!(
            "rabbitmq: nothing listens on 127.0.0.1:{closed}, and this script cannot start one here
(no rabbitmq-server it may start, no Docker daemon it can reach, no apt-get as root or with
sudo that asks no password).
Start one yourself, then run this again:
  Debian/Ubuntu:  sudo apt-get install -y rabbitmq-server && sudo systemctl start rabbitmq-server
  Docker:         docker run -d --name weibo-relay-rabbitmq -p 127.0.0.1:5672:5672 rabbitmq:3.13
  macOS:          brew install rabbitmq && brew services start rabbitmq
Another broker: bash .ci/demo --amqp-url amqp://USER:PASSWORD@HOST:5672/%2f
(README, \"Get Rust and RabbitMQ\").
"
        )
    );
}

#[test]
fn a_running_rabbitmq_is_used_as_it_is() {
    let bare = BarePath::new();
    let (code, stdout, stderr, took) = script(&bare, ".ci/ensure-rabbitmq.sh", &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout, "rabbitmq: already listening on 127.0.0.1:5672\n");
    assert!(took < Duration::from_secs(2), "{took:?}");
}

/// Both commands first check Rust, and without it print the rustup line and the crate's
/// rust-version (read from Cargo.toml), before anything else.
#[test]
fn without_rust_both_commands_print_the_rustup_line() {
    let bare = BarePath::new();
    let manifest =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).unwrap();
    let version = manifest
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .unwrap();
    for command in [".ci/demo", ".ci/test"] {
        let (code, stdout, stderr, _) = script(&bare, command, &[]);
        assert_eq!(code, Some(1), "{command}: {stdout}{stderr}");
        assert_eq!(stdout, "", "{command}");
        assert_eq!(
            stderr,
            format!("rust: cargo not found. Install Rust {version} or newer with rustup (Debian's rustc is older):\n  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y && . \"$HOME/.cargo/env\"\n"),
            "{command}"
        );
    }
}

/// Each file a document in docs/ names (`name.ext`) is in the repository: beside the
/// document, in docs/schemas, or from the repository's root.
#[test]
fn the_documents_cite_only_files_a_reader_has() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let extensions = [
        ".txt", ".md", ".json", ".yaml", ".yml", ".toml", ".rs", ".sh", ".py", ".js", ".png",
    ];
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(root.join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "md") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for (i, cited) in text.split('`').enumerate() {
            let is_path = i % 2 == 1
                && !cited.is_empty()
                && cited
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_./-".contains(&b))
                && extensions.iter().any(|e| cited.ends_with(e));
            let found = [
                root.join("docs"),
                root.join("docs/schemas"),
                root.to_path_buf(),
            ]
            .iter()
            .any(|dir| dir.join(cited).exists());
            if is_path && !found {
                missing.push(format!("{}: {cited}", path.display()));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "cited but not in the repository: {missing:#?}"
    );
}

/// README's commands after the demo use the release binary it built (`target/release/...` or
/// `cargo run --release`): a debug `cargo run --` would start a second full build.
#[test]
fn readme_commands_use_the_release_build_the_demo_made() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let debug: Vec<&str> = readme
        .lines()
        .filter(|l| {
            (l.contains("cargo run ") && !l.contains("cargo run --release"))
                || l.contains("target/debug/")
        })
        .collect();
    assert!(
        debug.is_empty(),
        "README builds or runs a debug binary: {debug:#?}"
    );
}
