//! The Kubernetes manifests: config assembled from ConfigMap and Secret, probes, security.

use super::support::*;
use secrecy::ExposeSecret;
use serde_yaml_ng::Value as Yaml;
use weibo_relay::settings::Settings;

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

/// Provider mode on Kubernetes: the example patch gives each Deployment's container the
/// store URL from the provider Secret's `store-url`, and the Secret's file with the
/// ConfigMap's environment loads as provider mode with that URL (not the file's fallback).
#[test]
fn deploy_k8s_provider_patch_and_secret_load_as_provider_mode() {
    let docs = k8s();
    let configmap = find(&docs, "ConfigMap", "weibo-relay");
    let patch = documents(&deploy().join("examples/k8s-provider-store.patch.yaml"));
    let secrets = documents(&deploy().join("examples/k8s-secret-provider.yaml"));
    let secret = find(&secrets, "Secret", "weibo-relay");
    let patched = patch[0]["spec"]["template"]["spec"]["containers"]
        .as_sequence()
        .unwrap();
    for name in ["weibo-relay-receiver", "weibo-relay-worker"] {
        let container =
            &find(&docs, "Deployment", name)["spec"]["template"]["spec"]["containers"][0];
        let extra = patched
            .iter()
            .find(|c| c["name"] == container["name"])
            .unwrap_or_else(|| panic!("the patch names {name}'s container"));
        let var = &extra["env"][0];
        assert_eq!(s(&var["name"]), "WEIBO_RELAY__PROVIDER__STORE_URL");
        let from = &var["valueFrom"]["secretKeyRef"];
        assert_eq!(s(&from["name"]), s(&secret["metadata"]["name"]));
        let store_url = filled_in(&format!(
            "\"{}\"",
            s(&secret["stringData"][s(&from["key"])])
        ));
        let mut env: Vec<(String, String)> = configmap["data"]
            .as_mapping()
            .unwrap()
            .iter()
            .map(|(k, v)| (s(k).to_owned(), s(v).to_owned()))
            .collect();
        env.push((
            s(&var["name"]).to_owned(),
            store_url.trim_matches('"').to_owned(),
        ));
        // The one placeholder filled_in cannot fill: a key of exactly 32 bytes. And the file's
        // fallback URL made different, so only the patch's variable can give the Secret's.
        let file = s(&secret["stringData"]["relay.toml"])
            .replace(
                "REPLACE_ME_BASE64_OF_32_RANDOM_BYTES",
                "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA=",
            )
            .replace("@postgres:5432/relay\"", "@file-fallback:5432/relay\"");
        assert!(file.contains("file-fallback"), "{file}");
        let settings = load_filled(&file, env);
        let provider = settings.provider.as_ref().expect("provider mode");
        assert_eq!(
            provider.config().store_url.expose_secret(),
            store_url.trim_matches('"'),
            "{name}"
        );
        assert!(settings.merchants.is_empty());
        settings.validate_for_relay().expect("a relay starts on it");
    }
    // The example PostgreSQL answers where the store URL points, with its user and database.
    let postgres = documents(&deploy().join("examples/k8s-postgres.yaml"));
    let service = find(&postgres, "Service", "postgres");
    let url = url::Url::parse(s(&secret["stringData"]["store-url"])).unwrap();
    assert_eq!(url.host_str(), Some(s(&service["metadata"]["name"])));
    assert_eq!(
        url.port(),
        service["spec"]["ports"][0]["port"]
            .as_u64()
            .map(|p| p as u16)
    );
    let env = &find(&postgres, "StatefulSet", "postgres")["spec"]["template"]["spec"]["containers"]
        [0]["env"];
    let value = |name: &str| {
        env.as_sequence()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .and_then(|e| e["value"].as_str())
            .map(str::to_owned)
    };
    assert_eq!(value("POSTGRES_USER").as_deref(), Some(url.username()));
    assert_eq!(
        value("POSTGRES_DB").as_deref(),
        Some(url.path().trim_start_matches('/'))
    );
}
