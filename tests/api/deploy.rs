//! deploy/ must agree with the code: the configs load, the YAML is well-formed and wired as
//! documented, and the RabbitMQ definitions are exactly the topology the relay declares (a
//! mismatch makes the relay's own declarations fail with PRECONDITION_FAILED).
//! No broker needed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use lapin::types::{AMQPValue, FieldTable};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::{json, Value as Json};
use serde_yaml_ng::Value as Yaml;
use weibo_relay::amqp::Names;
use weibo_relay::amqp::Topology;
use weibo_relay::settings::{is_placeholder, Settings};
use weibo_relay::startup::Roles;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn deploy() -> PathBuf {
    repo().join("deploy")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every file under `dir` whose name ends with one of `exts`, sorted.
fn files(dir: &Path, exts: &[&str]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files(&path, exts));
        } else if exts
            .iter()
            .any(|e| path.extension().is_some_and(|x| x == *e))
        {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// All documents of a (possibly multi-document) YAML file; each must be a mapping.
fn documents(path: &Path) -> Vec<Yaml> {
    let text = read(path);
    let docs: Vec<Yaml> = serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| {
            let mut doc =
                Yaml::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            // `<<: *anchor` as compose applies it.
            doc.apply_merge()
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            doc
        })
        .collect();
    assert!(!docs.is_empty(), "{}: no YAML document", path.display());
    for doc in &docs {
        assert!(
            doc.is_mapping(),
            "{}: not a mapping: {doc:?}",
            path.display()
        );
    }
    docs
}

fn s(v: &Yaml) -> &str {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {v:?}"))
}

fn strings(v: &Yaml) -> Vec<&str> {
    v.as_sequence()
        .unwrap_or_else(|| panic!("expected a list, got {v:?}"))
        .iter()
        .map(s)
        .collect()
}

/// The Kubernetes objects of deploy/k8s, applied with `kubectl apply -f deploy/k8s/`.
fn k8s() -> Vec<Yaml> {
    let dir = deploy().join("k8s");
    let mut docs = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            docs.extend(documents(&path));
        }
    }
    docs
}

fn find<'a>(docs: &'a [Yaml], kind: &str, name: &str) -> &'a Yaml {
    let found: Vec<&Yaml> = docs
        .iter()
        .filter(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .collect();
    assert_eq!(found.len(), 1, "exactly one {kind} {name}");
    found[0]
}

/// The example Secret, kept outside deploy/k8s/ so applying that directory never applies it.
fn example_secret() -> Yaml {
    let docs = documents(&deploy().join("examples/k8s-secret.yaml"));
    find(&docs, "Secret", "weibo-relay").clone()
}

/// `text` as an operator fills it in: every quoted placeholder secret, and a placeholder
/// password inside a URL, replaced by a real-looking value.
fn filled_in(text: &str) -> String {
    const REAL: &str = "3f9a1c0d5e7b2a4c6e8f0a1b3c5d7e9f";
    let mut out = String::new();
    for (i, piece) in text.split('"').enumerate() {
        if i % 2 == 1 && is_placeholder(piece) {
            match piece.split_once("://") {
                Some((scheme, rest)) => {
                    let (userinfo, host) = rest.rsplit_once('@').expect("a URL with a password");
                    let user = userinfo.split(':').next().unwrap();
                    out.push_str(&format!("{scheme}://{user}:{REAL}@{host}"));
                }
                None => out.push_str(REAL),
            }
        } else {
            out.push_str(piece);
        }
        out.push('"');
    }
    out.pop();
    out
}

/// Loads `text` as the file, with `env`, after filling in its placeholders.
fn load_filled(text: &str, env: Vec<(String, String)>) -> Settings {
    let tmp = std::env::temp_dir().join(format!(
        "weibo-relay-deploy-{}.toml",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::write(&tmp, filled_in(text)).unwrap();
    let loaded = Settings::load(Some(&tmp), env);
    std::fs::remove_file(&tmp).unwrap();
    loaded.unwrap_or_else(|e| panic!("filled-in config does not load: {e}"))
}

#[test]
fn deploy_example_config_loads_once_filled_in() {
    let settings = load_filled(&read(&deploy().join("relay.example.toml")), Vec::new());
    // The image runs it as is: it must listen beyond loopback.
    assert_eq!(settings.http.bind.to_string(), "0.0.0.0:8080");
    assert_eq!(settings.merchants.len(), 1);
}

/// A relay started on a shipped example, unchanged, must refuse: otherwise it would accept
/// pushes signed with a key anyone can read here.
#[test]
fn deploy_shipped_placeholders_are_refused_naming_the_key() {
    let err = Settings::load(Some(&deploy().join("relay.example.toml")), Vec::new())
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("invalid configuration: merchants[0].sign_key: "),
        "{err}"
    );
    let secret = example_secret();
    let tmp = std::env::temp_dir().join(format!(
        "weibo-relay-deploy-{}.toml",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::write(&tmp, s(&secret["stringData"]["relay.toml"])).unwrap();
    let loaded = Settings::load(Some(&tmp), Vec::new());
    std::fs::remove_file(&tmp).unwrap();
    let err = loaded.unwrap_err().to_string();
    assert!(
        err.starts_with("invalid configuration: merchants[0].sign_key: "),
        "{err}"
    );
    let url = s(&secret["stringData"]["amqp-url"]);
    let err = Settings::load(
        None,
        vec![("WEIBO_RELAY__AMQP__URL".to_owned(), url.to_owned())],
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with("invalid configuration: amqp.url: "),
        "{err}"
    );
    // Every quoted secret-looking value anywhere under deploy/ is one the loader refuses.
    for path in files(&deploy(), &["toml", "yaml"]) {
        let text = read(&path);
        for line in text.lines() {
            let lower = line.to_ascii_lowercase();
            if ["sign_key", "client_secret", "password", "amqp-url"]
                .iter()
                .any(|k| lower.contains(k))
                && line.contains("REPLACE")
            {
                assert!(is_placeholder(line), "{}: {line}", path.display());
            }
        }
    }
    // `kubectl apply -f deploy/k8s/` (recursively, too) must create no Secret of ours: an
    // example Secret applied as it is would run the relay on placeholders.
    for path in files(&deploy().join("k8s"), &["yaml", "yml"]) {
        for doc in documents(&path) {
            assert_ne!(
                doc["kind"].as_str(),
                Some("Secret"),
                "{} holds a Secret",
                path.display()
            );
        }
    }
}

#[test]
fn deploy_every_toml_file_is_a_valid_config_once_filled_in() {
    let tomls = files(&deploy(), &["toml"]);
    assert!(!tomls.is_empty());
    for path in tomls {
        load_filled(&read(&path), Vec::new());
    }
}

#[test]
fn deploy_every_yaml_file_is_well_formed() {
    let yamls = files(&deploy(), &["yaml", "yml"]);
    let names: BTreeSet<String> = yamls
        .iter()
        .map(|p| {
            p.strip_prefix(deploy())
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    for expected in [
        "compose.yaml",
        "k8s/configmap.yaml",
        "examples/k8s-secret.yaml",
        "k8s/receiver.yaml",
        "k8s/worker.yaml",
        "k8s/optional/keda-worker-scaler.yaml",
    ] {
        assert!(
            names.contains(expected),
            "{expected} missing from {names:?}"
        );
    }
    for path in &yamls {
        documents(path);
    }
    // Kubernetes objects: complete, and namespace-agnostic (kubectl -n chooses).
    for dir in ["k8s", "k8s/optional"] {
        for path in files(&deploy().join(dir), &["yaml"]) {
            for doc in documents(&path) {
                assert!(doc["apiVersion"].is_string(), "{}", path.display());
                assert!(doc["kind"].is_string(), "{}", path.display());
                assert!(doc["metadata"]["name"].is_string(), "{}", path.display());
                assert!(
                    doc["metadata"]["namespace"].is_null(),
                    "{}: hard-coded namespace",
                    path.display()
                );
            }
        }
    }
    assert_eq!(documents(&deploy().join("k8s/receiver.yaml")).len(), 3);
}

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

/// A compose value with its `${VAR:-default}` taken as the default and its required
/// `${VAR:?message}` set, as `docker compose` would with the variables the README exports.
fn compose_expand(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').expect("a closed ${...}") + start;
        let inner = &rest[start + 2..end];
        match (inner.split_once(":-"), inner.split_once(":?")) {
            (Some((_, default)), _) => out.push_str(default),
            (_, Some((var, _))) => out.push_str(&format!("set-{}", var.to_ascii_lowercase())),
            _ => panic!("unexpected compose variable {inner}"),
        }
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// What a pod runs with: the Secret's relay.toml as the one --config file, the ConfigMap as
/// environment, and the AMQP URL from the Secret as WEIBO_RELAY__AMQP__URL.
#[test]
fn deploy_k8s_pod_config_assembles_from_configmap_and_secret() {
    let docs = k8s();
    let configmap = find(&docs, "ConfigMap", "weibo-relay");
    let secret = &example_secret();

    for (name, role) in [
        ("weibo-relay-receiver", "receiver"),
        ("weibo-relay-worker", "worker"),
    ] {
        let pod = &find(&docs, "Deployment", name)["spec"]["template"]["spec"];
        let containers = pod["containers"].as_sequence().unwrap();
        assert_eq!(containers.len(), 1);
        let c = &containers[0];

        // args name the file the Secret volume provides.
        let mount = &c["volumeMounts"][0];
        let volume = pod["volumes"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|v| v["name"] == mount["name"])
            .expect("the mounted volume");
        assert_eq!(s(&volume["secret"]["secretName"]), "weibo-relay");
        let items = volume["secret"]["items"].as_sequence().unwrap();
        assert_eq!(items.len(), 1, "only relay.toml is mounted");
        let key = s(&items[0]["key"]);
        let file = format!("{}/{}", s(&mount["mountPath"]), s(&items[0]["path"]));
        assert_eq!(strings(&c["args"]), [role, "--config", file.as_str()]);

        // Environment: the whole ConfigMap plus the URL from the Secret.
        assert_eq!(s(&c["envFrom"][0]["configMapRef"]["name"]), "weibo-relay");
        let url = &c["env"][0];
        assert_eq!(s(&url["name"]), "WEIBO_RELAY__AMQP__URL");
        assert_eq!(s(&url["valueFrom"]["secretKeyRef"]["name"]), "weibo-relay");
        let url_key = s(&url["valueFrom"]["secretKeyRef"]["key"]);

        let mut env: Vec<(String, String)> = configmap["data"]
            .as_mapping()
            .unwrap()
            .iter()
            .map(|(k, v)| (s(k).to_owned(), s(v).to_owned()))
            .collect();
        let url = filled_in(&format!("\"{}\"", s(&secret["stringData"][url_key])));
        env.push((
            "WEIBO_RELAY__AMQP__URL".to_owned(),
            url.trim_matches('"').to_owned(),
        ));
        let settings = load_filled(s(&secret["stringData"][key]), env);

        // The Secret's file has no [http]: 0.0.0.0 proves the ConfigMap was applied (and an
        // unknown key in it would have failed the load).
        assert_eq!(settings.http.bind.to_string(), "0.0.0.0:8080");
        assert_eq!(
            settings.http.admin_bind.map(|a| a.to_string()).as_deref(),
            Some("0.0.0.0:9090")
        );
        assert_eq!(
            settings.amqp.url,
            weibo_relay::settings::AmqpUrl::parse(url.trim_matches('"')).unwrap()
        );
        assert_eq!(settings.merchants.len(), 1);
    }
}

#[test]
fn deploy_k8s_probes_security_and_scaling() {
    let docs = k8s();
    for name in ["weibo-relay-receiver", "weibo-relay-worker"] {
        let deployment = find(&docs, "Deployment", name);
        let template = &deployment["spec"]["template"];
        assert_eq!(
            deployment["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"],
            template["metadata"]["labels"]["app.kubernetes.io/component"]
        );
        let pod = &template["spec"];
        let c = &pod["containers"][0];
        // Probes on the admin listener (http.admin_bind, from the ConfigMap), which no
        // Service exposes; the push port only on the receiver.
        let port = |name: &str| {
            c["ports"]
                .as_sequence()
                .unwrap()
                .iter()
                .find(|p| p["name"] == name)
                .and_then(|p| p["containerPort"].as_u64())
        };
        assert_eq!(port("admin"), Some(9090), "{name}");
        let push_port = (name == "weibo-relay-receiver").then_some(8080);
        assert_eq!(port("http"), push_port, "{name}");
        assert_eq!(s(&c["readinessProbe"]["httpGet"]["path"]), "/readyz");
        assert_eq!(c["readinessProbe"]["httpGet"]["port"], "admin");
        assert_eq!(s(&c["livenessProbe"]["httpGet"]["path"]), "/healthz");
        assert_eq!(c["livenessProbe"]["httpGet"]["port"], "admin");
        assert!(c["resources"]["requests"]["cpu"].is_string(), "{name}");
        assert!(c["resources"]["limits"]["memory"].is_string(), "{name}");
        assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
        assert_eq!(pod["securityContext"]["runAsUser"].as_u64(), Some(10001));
        assert_eq!(
            c["securityContext"]["allowPrivilegeEscalation"].as_bool(),
            Some(false)
        );
    }

    let receiver = find(&docs, "Deployment", "weibo-relay-receiver");
    let service = find(&docs, "Service", "weibo-relay-receiver");
    let labels = receiver["spec"]["template"]["metadata"]["labels"]
        .as_mapping()
        .unwrap();
    for (k, v) in service["spec"]["selector"].as_mapping().unwrap() {
        assert_eq!(labels.get(k), Some(v), "Service selector {k:?}");
    }
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "http");
    let hpa = find(&docs, "HorizontalPodAutoscaler", "weibo-relay-receiver");
    assert_eq!(s(&hpa["apiVersion"]), "autoscaling/v2");
    assert_eq!(s(&hpa["spec"]["scaleTargetRef"]["kind"]), "Deployment");
    assert_eq!(
        s(&hpa["spec"]["scaleTargetRef"]["name"]),
        "weibo-relay-receiver"
    );
    assert_eq!(s(&hpa["spec"]["metrics"][0]["resource"]["name"]), "cpu");

    // Two workers by default: they elect one token keeper, so losing one costs seconds.
    let worker = find(&docs, "Deployment", "weibo-relay-worker");
    assert_eq!(worker["spec"]["replicas"].as_u64(), Some(2));
    assert_eq!(s(&worker["spec"]["strategy"]["type"]), "RollingUpdate");

    // The optional KEDA scaler targets the worker and the fulfilment queue.
    let keda = documents(&deploy().join("k8s/optional/keda-worker-scaler.yaml"));
    let scaled = find(&keda, "ScaledObject", "weibo-relay-worker");
    assert_eq!(
        s(&scaled["spec"]["scaleTargetRef"]["name"]),
        "weibo-relay-worker"
    );
    let defaults = Settings::load(None, std::iter::empty()).unwrap();
    assert_eq!(
        s(&scaled["spec"]["triggers"][0]["metadata"]["queueName"]),
        defaults.amqp.fulfilment_queue
    );
}

/// Every secret string of the example Secret (its entries and the credentials inside its
/// relay.toml) must stay out of every ConfigMap, and so must the secret keys themselves.
#[test]
fn deploy_no_secret_value_appears_in_a_configmap() {
    let docs = k8s();
    let secret = &example_secret();
    let mut secrets: Vec<String> = Vec::new();
    for (_, v) in secret["stringData"].as_mapping().unwrap() {
        secrets.push(s(v).to_owned());
    }
    let toml = s(&secret["stringData"]["relay.toml"]);
    let unfilled = toml::from_str::<toml::Table>(toml).expect("the Secret's relay.toml is TOML");
    for m in unfilled["merchants"].as_array().unwrap() {
        let m = m.as_table().unwrap();
        secrets.push(m["sign_key"].as_str().unwrap().to_owned());
        secrets.push(m["client_secret"].as_str().unwrap().to_owned());
    }
    for m in load_filled(toml, Vec::new()).merchants.iter() {
        secrets.push(m.sign_key().expose_secret().to_owned());
        secrets.push(m.client_secret().expose_secret().to_owned());
    }
    let url = s(&secret["stringData"]["amqp-url"]);
    let password = url
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('@'))
        .and_then(|(userinfo, _)| userinfo.split_once(':'))
        .map(|(_, p)| p)
        .expect("the example URL has a password placeholder");
    secrets.push(password.to_owned());

    let configmaps: Vec<&Yaml> = docs.iter().filter(|d| d["kind"] == "ConfigMap").collect();
    assert!(!configmaps.is_empty());
    for cm in configmaps {
        for (k, v) in cm["data"].as_mapping().unwrap() {
            let (k, v) = (s(k), s(v));
            for secret in &secrets {
                assert!(!v.contains(secret.as_str()), "ConfigMap {k} holds a secret");
            }
            for banned in ["AMQP__URL", "MERCHANTS", "SIGN_KEY", "CLIENT_SECRET"] {
                assert!(!k.contains(banned), "ConfigMap sets {k}");
            }
            assert!(
                !v.contains("[[merchants]]"),
                "ConfigMap {k} holds merchants"
            );
        }
    }
}

/// The topology the app declares for the default settings, as it would appear in a
/// definitions file. Unknown argument types fail loudly rather than compare as equal.
fn arguments_json(table: &FieldTable) -> Json {
    let map = table
        .inner()
        .iter()
        .map(|(k, v)| {
            let v = match v {
                AMQPValue::LongString(s) => {
                    Json::String(String::from_utf8(s.as_bytes().to_vec()).unwrap())
                }
                AMQPValue::LongLongInt(i) => json!(i),
                AMQPValue::Boolean(b) => json!(b),
                other => panic!("argument {k}: no JSON form chosen for {other:?}"),
            };
            (k.as_str().to_owned(), v)
        })
        .collect();
    Json::Object(map)
}

fn declared_topology() -> Topology {
    let s = Settings::load(None, std::iter::empty()).unwrap();
    Topology::for_roles(&Names::new(&s.amqp), &s, Roles::Serve)
}

fn keys(v: &Json) -> BTreeSet<&str> {
    v.as_object()
        .unwrap_or_else(|| panic!("expected an object, got {v}"))
        .keys()
        .map(String::as_str)
        .collect()
}

#[test]
fn deploy_rabbitmq_definitions_match_the_declared_topology() {
    let topology = declared_topology();
    let path = deploy().join("rabbitmq/definitions.json");
    let defs: Json = serde_json::from_str(&read(&path)).unwrap();
    // Nothing else (no policies: they could contradict the declared arguments).
    assert_eq!(
        keys(&defs),
        BTreeSet::from(["vhosts", "exchanges", "queues", "bindings"])
    );
    assert_eq!(defs["vhosts"], json!([{"name": "/"}]));

    // Exchanges: durable topic, no arguments (Topology::declare).
    let exchanges = defs["exchanges"].as_array().unwrap();
    let mut names = Vec::new();
    for e in exchanges {
        let name = e["name"].as_str().unwrap();
        let expected = json!({"name": name, "vhost": "/", "type": "topic", "durable": true,
            "auto_delete": false, "internal": false, "arguments": {}});
        assert_eq!(e, &expected, "exchange {name}");
        names.push(name.to_owned());
    }
    assert_eq!(names, topology.exchanges());

    // Queues: durable, not auto-delete, and exactly the declared arguments.
    let mut file_queues: BTreeMap<String, Json> = BTreeMap::new();
    for q in defs["queues"].as_array().unwrap() {
        assert_eq!(
            keys(q),
            BTreeSet::from(["name", "vhost", "durable", "auto_delete", "arguments"])
        );
        let name = q["name"].as_str().unwrap().to_owned();
        assert_eq!(q["vhost"], "/", "{name}");
        assert_eq!(q["durable"], true, "{name}");
        assert_eq!(q["auto_delete"], false, "{name}");
        assert!(
            file_queues
                .insert(name.clone(), q["arguments"].clone())
                .is_none(),
            "{name} twice"
        );
    }
    let declared: BTreeMap<String, Json> = topology
        .queues()
        .iter()
        .map(|q| (q.name.clone(), arguments_json(&q.arguments)))
        .collect();
    assert_eq!(declared.len(), topology.queues().len());
    assert_eq!(file_queues, declared);

    // Bindings.
    let mut file_bindings = Vec::new();
    for b in defs["bindings"].as_array().unwrap() {
        assert_eq!(
            keys(b),
            BTreeSet::from([
                "source",
                "vhost",
                "destination",
                "destination_type",
                "routing_key",
                "arguments"
            ])
        );
        assert_eq!(b["vhost"], "/");
        assert_eq!(b["destination_type"], "queue");
        assert_eq!(b["arguments"], json!({}));
        file_bindings.push((
            b["destination"].as_str().unwrap().to_owned(),
            b["source"].as_str().unwrap().to_owned(),
            b["routing_key"].as_str().unwrap().to_owned(),
        ));
    }
    let mut declared_bindings = topology.bindings().to_vec();
    file_bindings.sort();
    declared_bindings.sort();
    assert_eq!(file_bindings, declared_bindings);

    // What the README promises for the defaults: one delay queue per delay, named by it,
    // 5 s doubling to 320 s, each expiring a day after its last declaration.
    let delays: Vec<(i64, i64)> = file_queues
        .iter()
        .filter(|(name, _)| name.starts_with("weibo.fulfilment.retry."))
        .map(|(name, args)| {
            let ttl = args["x-message-ttl"].as_i64().unwrap();
            assert_eq!(name, &format!("weibo.fulfilment.retry.{ttl}ms"));
            (ttl, args["x-expires"].as_i64().unwrap() - ttl)
        })
        .collect();
    let mut ttls: Vec<i64> = delays.iter().map(|(t, _)| *t).collect();
    ttls.sort();
    assert_eq!(ttls, [5000, 10000, 20000, 40000, 80000, 160000, 320000]);
    assert!(
        delays.iter().all(|(_, grace)| *grace == 86_400_000),
        "{delays:?}"
    );
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
    // (stripped of line tables, symbols kept) and without the tooling, whose binary is the
    // one copied.
    assert_eq!(
        dockerfile
            .matches("cargo build --profile dist --locked --no-default-features")
            .count(),
        2
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
