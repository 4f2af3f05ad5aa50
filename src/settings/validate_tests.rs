//! The ranges: each hostile value refused, each limit accepted, each documented.

use super::*;

mod refused {
    use super::*;

    const MERCHANT: &str = "[[merchants]]\nappid = \"100023\"\nsign_key = \"k3y-0123456789abcdef\"\nclient_id = \"772915\"\nclient_secret = \"appsecret-0123456789\"\nuid = \"1404376560\"\n";

    fn refused(toml: &str) -> String {
        Settings::from_toml(&format!("{toml}\n{MERCHANT}"))
            .unwrap_err()
            .to_string()
    }

    fn accepted(toml: &str) {
        if let Err(e) = Settings::from_toml(&format!("{toml}\n{MERCHANT}")) {
            panic!("{toml}: {e}");
        }
    }

    #[test]
    fn the_values_that_hung_panicked_or_were_refused_by_the_broker_stop_the_start() {
        for (toml, key) in [
            ("[worker]\nconcurrency = 0", "worker.concurrency"),
            ("[worker]\nprefetch = 0", "worker.prefetch"),
            (
                "[reconcile]\nlookback_secs = 9223372036854775807",
                "reconcile.lookback_secs",
            ),
            (
                "[weibo]\nretry_max_ms = 9223372036854775807",
                "weibo.retry_max_ms",
            ),
            ("[weibo]\nretry_base_ms = 600001", "weibo.retry_base_ms"),
            ("[http]\nworkers = 513", "http.workers"),
            ("[amqp]\nheartbeat_secs = 0", "amqp.heartbeat_secs"),
            (
                "[amqp]\nreconnect_max_ms = 9223372036854775807",
                "amqp.reconnect_max_ms",
            ),
            ("[amqp]\nreconnect_min_ms = 6000", "amqp.reconnect_min_ms"),
            ("[reconcile]\ninterval_secs = 0", "reconcile.interval_secs"),
            ("[reconcile]\nsettle_secs = 7200", "reconcile.settle_secs"),
            (
                "[http]\nshutdown_timeout_secs = 9223372036854775807",
                "http.shutdown_timeout_secs",
            ),
            ("[push]\nmax_skew_secs = 0", "push.max_skew_secs"),
            (
                "[push]\ndedup_capacity = 9223372036854775807",
                "push.dedup_capacity",
            ),
            (
                "[weibo]\nrate_limit_per_sec = 4294967295",
                "weibo.rate_limit_per_sec",
            ),
            ("[weibo]\ntimeout_ms = 0", "weibo.timeout_ms"),
            ("[worker]\ntoken_wait_ms = 0", "worker.token_wait_ms"),
        ] {
            let why = refused(toml);
            assert!(
                why.starts_with(&format!("invalid configuration: {key}: must be ")),
                "{toml}: {why}"
            );
            assert_eq!(why.lines().count(), 1, "{why}");
        }
        assert_eq!(
            refused("[worker]\nconcurrency = 0"),
            "invalid configuration: worker.concurrency: must be 1 to 4096 (got 0)"
        );
        // From the environment, a number may come as text, and no number as anything else.
        for (value, why) in [
            ("0", "must be 1 to 4096 (got 0)"),
            ("-7", "must be 1 to 4096 (got -7)"),
            ("many", "must be a whole number from 1 to 4096"),
        ] {
            let env = [(
                "WEIBO_RELAY__WORKER__CONCURRENCY".to_owned(),
                value.to_owned(),
            )];
            let err = Settings::load(None, env).unwrap_err().to_string();
            assert_eq!(
                err,
                format!("invalid configuration: worker.concurrency: {why}")
            );
        }
    }

    #[test]
    fn each_range_ends_where_it_still_works() {
        accepted(&format!(
            "[weibo]\nretry_base_ms = {MAX_RETRY_MS}\nretry_max_ms = {MAX_RETRY_MS}"
        ));
        let why = refused(&format!("[weibo]\nretry_max_ms = {}", MAX_RETRY_MS + 1));
        assert!(why.contains("must be 1 to 315273600000"), "{why}");
        accepted("[http]\nworkers = 512");
        accepted("[worker]\nconcurrency = 4096\nprefetch = 65535");
        accepted("[push]\nmax_skew_secs = 4000000000\ndedup_capacity = 0");
        accepted("[http]\nshutdown_timeout_secs = 0");
        accepted("[reconcile]\nsettle_secs = 0\nlookback_secs = 1");
    }

    #[test]
    fn a_sweep_window_longer_than_the_event_log_is_refused_unless_reconciliation_is_off() {
        // 7 days of log, 10 minutes read before the window: at most 604200 s.
        accepted("[reconcile]\nlookback_secs = 604200");
        assert_eq!(
            refused("[reconcile]\nlookback_secs = 604201"),
            "invalid configuration: reconcile.lookback_secs: must be at most 604200 with event_log.max_age = \"7D\" (the log must cover the window and 600 s before it): an older state is no longer in the log, and every sweep would publish it again"
        );
        accepted("[reconcile]\nlookback_secs = 2592000\n[event_log]\nmax_age = \"31D\"");
        accepted("[reconcile]\nenabled = false\n[event_log]\nmax_age = \"1h\"");
        let why = refused("[event_log]\nmax_age = \"1h\"");
        assert!(
            why.starts_with(
                "invalid configuration: reconcile.lookback_secs: must be at most 3000 "
            ),
            "{why}"
        );
        let why = refused("[reconcile]\nlookback_secs = 31536001");
        assert!(why.contains("must be 1 to 31536000"), "{why}");
    }

    #[test]
    fn files_are_read_up_to_a_cap_whatever_they_are() {
        let why =
            crate::settings::read_capped(std::path::Path::new("/dev/zero"), 1 << 20).unwrap_err();
        assert_eq!(
            why,
            "/dev/zero is larger than 1024 KiB: not a configuration or PEM file"
        );
        let why = refused("[amqp]\ntls_ca_file = \"/dev/zero\"");
        assert_eq!(why, "invalid configuration: amqp.tls_ca_file: /dev/zero is larger than 1024 KiB: not a configuration or PEM file");
        let err = Settings::load(Some(std::path::Path::new("/dev/zero")), Vec::new()).unwrap_err();
        assert_eq!(err.to_string(), "invalid configuration: /dev/zero is larger than 1024 KiB: not a configuration or PEM file");
    }
}
