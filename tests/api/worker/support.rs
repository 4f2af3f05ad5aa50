//! The operator's `dlq` command run as a process on a test's settings.

use crate::support::*;

/// Runs `weibo-relay dlq ARGS` with a configuration naming `amqp`'s queues.
pub(crate) fn dlq_cli(
    settings: &weibo_relay::settings::Settings,
    args: &[&str],
) -> std::process::Output {
    let config = ConfigFile::of(settings).unwrap();
    std::process::Command::new(BIN)
        .arg("dlq")
        .args(args)
        .arg("--config")
        .arg(config.path())
        .output()
        .unwrap()
}
