//! The Compose files and the Dockerfile, wired as the README says.

use super::support::*;
use std::collections::BTreeSet;

#[test]
fn deploy_compose_wires_broker_roles_config_and_readiness() {
    let compose = &documents(&deploy().join("compose.yaml"))[0];
    let services = &compose["services"];
    let names: BTreeSet<&str> = services.as_mapping().unwrap().keys().map(s).collect();
    assert_eq!(names, BTreeSet::from(["rabbitmq", "receiver", "worker"]));

    let rabbit = &services["rabbitmq"];
    assert_eq!(s(&rabbit["image"]), "rabbitmq:3.13");
    assert_eq!(
        strings(&rabbit["healthcheck"]["test"]),
        ["CMD", "rabbitmq-diagnostics", "-q", "ping"]
    );
    // Loopback only: no management UI, nothing open to the network by default.
    assert_eq!(strings(&rabbit["ports"]), ["127.0.0.1:5672:5672"]);

    // The config file must be named: no fallback to the example and its placeholders.
    let secret_file = s(&compose["secrets"]["relay_config"]["file"]);
    assert!(
        secret_file.starts_with("${WEIBO_RELAY_CONFIG_FILE:?"),
        "{secret_file}"
    );
    let example = read(&deploy().join("relay.example.toml"));

    for role in ["receiver", "worker"] {
        let svc = &services[role];
        assert_eq!(s(&svc["build"]["context"]), "..");
        assert!(deploy()
            .join(s(&svc["build"]["context"]))
            .join(s(&svc["build"]["dockerfile"]))
            .is_file());
        assert_eq!(
            strings(&svc["command"]),
            [role, "--config", "/run/secrets/relay.toml"]
        );
        assert_eq!(s(&svc["secrets"][0]["source"]), "relay_config");
        assert_eq!(s(&svc["secrets"][0]["target"]), "relay.toml");
        assert_eq!(
            s(&svc["depends_on"]["rabbitmq"]["condition"]),
            "service_healthy"
        );
        assert_eq!(
            strings(&svc["healthcheck"]["test"]),
            ["CMD", "curl", "-fsS", "http://127.0.0.1:9090/readyz"],
            "{role}"
        );
        // The file plus the service's environment is a valid configuration, reachable
        // from outside the container, and the broker is the compose service.
        let env: Vec<(String, String)> = svc["environment"]
            .as_mapping()
            .unwrap()
            .iter()
            .map(|(k, v)| (s(k).to_owned(), compose_expand(s(v))))
            .collect();
        let settings = load_filled(&example, env);
        assert_eq!(settings.http.bind.to_string(), "0.0.0.0:8080", "{role}");
        assert_eq!(
            settings.http.admin_bind.map(|a| a.to_string()).as_deref(),
            Some("0.0.0.0:9090"),
            "{role}: the health check's port"
        );
        assert!(
            settings.amqp.url.shown().contains("@rabbitmq:5672/"),
            "{role}"
        );
    }
    assert_eq!(
        strings(&services["receiver"]["ports"]),
        ["127.0.0.1:8080:8080", "127.0.0.1:9090:9090"]
    );
}

#[test]
fn deploy_compose_cluster_override_gives_three_nodes_to_every_relay() {
    let base = &documents(&deploy().join("compose.yaml"))[0]["services"];
    let cluster = &documents(&deploy().join("compose.cluster.yaml"))[0];
    let services = &cluster["services"];
    let conf = read(&deploy().join(s(&cluster["configs"]["rabbitmq_cluster"]["file"])));
    for (i, node) in ["rabbitmq", "rabbitmq-2", "rabbitmq-3"].iter().enumerate() {
        let svc = &services[*node];
        assert_eq!(s(&svc["hostname"]), *node);
        assert!(
            s(&svc["environment"]["RABBITMQ_ERLANG_COOKIE"])
                .starts_with("${RABBITMQ_ERLANG_COOKIE:?"),
            "{node}: the cookie is the operator's, never a default"
        );
        assert_eq!(
            s(&svc["configs"][0]["target"]),
            "/etc/rabbitmq/conf.d/20-cluster.conf"
        );
        assert_eq!(
            strings(&svc["healthcheck"]["test"]),
            [
                "CMD",
                "rabbitmqctl",
                "-q",
                "await_online_nodes",
                "3",
                "--timeout",
                "5"
            ]
        );
        assert!(
            conf.contains(&format!("classic_config.nodes.{} = rabbit@{node}", i + 1)),
            "{node} missing from cluster.conf"
        );
    }
    // The first node keeps its data volume and loopback port from compose.yaml.
    assert_eq!(strings(&base["rabbitmq"]["ports"]), ["127.0.0.1:5672:5672"]);
    for node in ["rabbitmq-2", "rabbitmq-3"] {
        assert!(strings(&services[node]["ports"])[0].starts_with("127.0.0.1:"));
    }
    for role in ["receiver", "worker"] {
        let mut env: Vec<(String, String)> = base[role]["environment"]
            .as_mapping()
            .unwrap()
            .iter()
            .chain(services[role]["environment"].as_mapping().unwrap())
            .map(|(k, v)| (s(k).to_owned(), compose_expand(s(v))))
            .collect();
        env.sort();
        let settings = load_filled(&read(&deploy().join("relay.example.toml")), env);
        let hosts: Vec<String> = settings
            .amqp
            .endpoints()
            .into_iter()
            .map(|e| e.uri.authority.host)
            .collect();
        assert_eq!(hosts, ["rabbitmq", "rabbitmq-2", "rabbitmq-3"], "{role}");
        let waits: BTreeSet<&str> = services[role]["depends_on"]
            .as_mapping()
            .unwrap()
            .keys()
            .map(s)
            .collect();
        assert_eq!(
            waits,
            BTreeSet::from(["rabbitmq", "rabbitmq-2", "rabbitmq-3"])
        );
    }
}

#[test]
fn deploy_dockerfile_builds_locked_and_runs_unprivileged() {
    let dockerfile = read(&deploy().join("Dockerfile"));
    let lines: Vec<&str> = dockerfile
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let from: Vec<&str> = lines
        .iter()
        .filter(|l| l.starts_with("FROM "))
        .copied()
        .collect();
    assert_eq!(
        from,
        [
            "FROM rust:1-bookworm AS builder",
            "FROM debian:bookworm-slim"
        ]
    );
    // The dependency layer and the real build, both from the lock file, in the dist profile
    // (stripped of line tables, symbols kept), the relay's package alone (not the tooling),
    // whose binary is the one copied.
    assert_eq!(
        dockerfile
            .matches("cargo build --profile dist --locked -p weibo-relay")
            .count(),
        2
    );
    assert!(
        !dockerfile.contains("-p weibo-relay-tooling"),
        "{dockerfile}"
    );
    assert!(lines
        .contains(&"COPY --from=builder /app/target/dist/weibo-relay /usr/local/bin/weibo-relay"));
    let manifest: toml::Table = toml::from_str(&read(&deploy().join("../Cargo.toml"))).unwrap();
    let dist = &manifest["profile"]["dist"];
    assert_eq!(dist["inherits"].as_str(), Some("release"));
    assert_eq!(dist["strip"].as_str(), Some("debuginfo"));
    assert_eq!(dist["debug"].as_bool(), Some(false));
    assert!(lines.contains(&r#"ENTRYPOINT ["weibo-relay"]"#));
    assert!(lines.contains(&r#"CMD ["serve", "--config", "/etc/weibo-relay/relay.toml"]"#));
    // No configuration in the image: it would be a usable (placeholder) key.
    assert!(!dockerfile.contains("relay.example.toml"), "{dockerfile}");
    assert!(
        !lines.iter().any(|l| l.starts_with("COPY deploy/")),
        "{dockerfile}"
    );
    assert!(lines.contains(&"EXPOSE 8080 9090"));
    assert!(dockerfile.contains("ca-certificates"));
    let user = lines
        .iter()
        .rev()
        .find(|l| l.starts_with("USER "))
        .expect("a USER");
    assert!(
        !user.contains("root") && !user.starts_with("USER 0"),
        "{user}"
    );
    assert!(dockerfile.contains("HEALTHCHECK") && dockerfile.contains("/readyz"));
    // Every COPY from the build context names something that exists.
    for l in lines.iter().filter(|l| l.starts_with("COPY ")) {
        let parts: Vec<&str> = l.split_whitespace().collect();
        if parts[1].starts_with("--from") {
            continue;
        }
        for src in &parts[1..parts.len() - 1] {
            assert!(repo().join(src).exists(), "{l}: {src} missing");
        }
    }
    let ignore = read(&repo().join(".dockerignore"));
    let ignored: BTreeSet<&str> = ignore.lines().map(str::trim).collect();
    assert!(ignored.contains("target") && ignored.contains(".git"));
}
