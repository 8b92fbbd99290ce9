//! `render` tests: ABStore YAML in, multi-document YAML of every child out, in apply order;
//! errors that name the document and the field; and the output (for the chart's examples and
//! inline stores) valid against Kubernetes' own schemas with `kubernetes-validate`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Deserialize;

use abstore_operator::render::{RenderError, render};

/// The oldest Kubernetes ABStore supports: rendered objects must be valid there.
const OLDEST_KUBERNETES: &str = "1.28.0";
/// Prometheus Operator kinds, which Kubernetes' schemas do not know.
const PROMETHEUS_OPERATOR_KINDS: [&str; 2] = ["ServiceMonitor", "PrometheusRule"];

const MINIMAL: &str = "\
apiVersion: abstore.dev/v1alpha1
kind: ABStore
metadata:
  name: shop
  namespace: ab
spec: {}
";

const CLUSTER: &str = "\
apiVersion: abstore.dev/v1alpha1
kind: ABStore
metadata:
  name: shard
  namespace: ab
spec:
  mode: cluster
  cluster: {shards: 3, replicasPerShard: 1}
  tls: {enabled: true, secretName: shard-tls}
  backup: {destination: s3://bucket/shard}
";

const EVERYTHING: &str = "\
apiVersion: abstore.dev/v1alpha1
kind: ABStore
metadata:
  name: checkout
  namespace: ab
spec:
  redis: {replicas: 1, maxmemory: 512Mi, storage: {size: 4Gi, storageClassName: fast}}
  tls: {enabled: true, secretName: checkout-tls}
  auth: {users: [{name: reporting, keys: ['ec:*'], commands: '+@read'}]}
  backup:
    destination: s3://bucket/checkout
    serviceAccountName: backup
    credentialsSecretName: s3-credentials
    env: [{name: AWS_REGION, value: eu-west-1}]
    keyPatterns: ['ec:*']
  monitoring: {serviceMonitor: {enabled: true, labels: {release: prom}}, prometheusRule: {enabled: true}}
  networkPolicy:
    allowedClients: [{namespaceSelector: {matchLabels: {team: growth}}}]
    metricsScrapers: [{namespaceSelector: {matchLabels: {name: monitoring}}}]
  affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: [{matchExpressions: [{key: pool, operator: In, values: [redis]}]}]}}}
  tolerations: [{key: dedicated, operator: Exists}]
  priorityClassName: critical
  api:
    enabled: true
    apiKeySecret: {name: checkout-api-key}
    allowedOrigins: ['https://shop.example']
    allowedClients: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: ingress-nginx}}}]
    autoscaling: {enabled: true, maxReplicas: 6}
";

/// The rendered documents, as generic YAML.
fn documents(yaml: &str) -> Vec<serde_yaml::Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|doc| serde_yaml::Value::deserialize(doc).unwrap())
        .filter(|doc| !doc.is_null())
        .collect()
}

fn kind_and_name(doc: &serde_yaml::Value) -> (String, String) {
    (
        doc["kind"].as_str().unwrap().to_owned(),
        doc["metadata"]["name"].as_str().unwrap().to_owned(),
    )
}

#[test]
fn render_output_is_multi_document_yaml_with_api_version_and_kind_on_each() {
    // `kubectl apply -f` and GitOps tools need every document self-describing.
    let docs = documents(&render(MINIMAL, None).unwrap());
    assert!(docs.len() > 15, "{} documents", docs.len());
    for doc in &docs {
        assert!(doc["apiVersion"].as_str().is_some(), "{doc:?}");
        assert!(doc["kind"].as_str().is_some(), "{doc:?}");
        assert_eq!(doc["metadata"]["namespace"].as_str(), Some("ab"));
    }
}

#[test]
fn render_lists_objects_in_apply_order() {
    // Secrets and the ConfigMap must exist before the pods that mount them.
    let docs = documents(&render(EVERYTHING, None).unwrap());
    let order = [
        "Secret",
        "ConfigMap",
        "Service",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "StatefulSet",
        "Deployment",
        "HorizontalPodAutoscaler",
        "CronJob",
        "ServiceMonitor",
        "PrometheusRule",
    ];
    let ranks: Vec<usize> = docs
        .iter()
        .map(|doc| {
            let kind = kind_and_name(doc).0;
            order.iter().position(|k| *k == kind).unwrap()
        })
        .collect();
    assert!(ranks.windows(2).all(|w| w[0] <= w[1]), "{ranks:?}");
    // Every kind of the full spec is there.
    for kind in order {
        assert!(
            docs.iter().any(|doc| kind_and_name(doc).0 == kind),
            "{kind} missing"
        );
    }
}

#[test]
fn render_is_deterministic_apart_from_generated_passwords() {
    // Reviewers diff render output; only the fresh secrets may differ between runs.
    let strip = |yaml: String| -> Vec<serde_yaml::Value> {
        documents(&yaml)
            .into_iter()
            .filter(|doc| kind_and_name(doc).0 != "Secret")
            .map(|mut doc| {
                // The config hash covers the ACL file, whose password hashes are fresh.
                if let Some(annotations) =
                    doc["spec"]["template"]["metadata"]["annotations"].as_mapping_mut()
                {
                    annotations.clear();
                }
                doc
            })
            .collect()
    };
    assert_eq!(
        strip(render(EVERYTHING, None).unwrap()),
        strip(render(EVERYTHING, None).unwrap())
    );
}

#[test]
fn several_stores_in_one_file_are_rendered_in_order() {
    // One GitOps file may hold every store of a namespace.
    let input = format!("{MINIMAL}---\n# a comment-only document is skipped\n---\n{EVERYTHING}");
    let docs = documents(&render(&input, None).unwrap());
    let sets: Vec<String> = docs
        .iter()
        .map(kind_and_name)
        .filter(|(kind, _)| kind == "StatefulSet")
        .map(|(_, name)| name)
        .collect();
    assert_eq!(
        sets,
        [
            "shop-redis",
            "shop-sentinel",
            "checkout-redis",
            "checkout-sentinel"
        ]
    );
}

#[test]
fn the_namespace_flag_fills_in_a_missing_namespace_and_must_match_a_given_one() {
    // A file without namespace is common; silently rendering into another one is not OK.
    let without = MINIMAL.replace("  namespace: ab\n", "");
    let docs = documents(&render(&without, Some("team-a")).unwrap());
    assert!(
        docs.iter()
            .all(|doc| doc["metadata"]["namespace"].as_str() == Some("team-a"))
    );

    let error = render(&without, None).unwrap_err();
    assert!(error.to_string().contains("metadata.namespace"), "{error}");

    let error = render(MINIMAL, Some("other")).unwrap_err();
    assert!(
        matches!(error, RenderError::NamespaceMismatch { document: 1, .. }),
        "{error}"
    );
}

#[test]
fn an_invalid_store_is_reported_with_its_document_number_and_field() {
    // With several stores in a file, the user must know which one to fix, and where.
    let bad = EVERYTHING.replace("replicas: 1,", "replicas: 1, maxmemory: lots,");
    let bad = bad.replacen("maxmemory: 512Mi, ", "", 1);
    let error = render(&format!("{MINIMAL}---\n{bad}"), None).unwrap_err();
    let text = error.to_string();
    assert!(text.starts_with("document 2: ABStore checkout"), "{text}");
    assert!(text.contains("spec.redis.maxmemory"), "{text}");
}

#[test]
fn yaml_that_is_not_an_abstore_is_refused_with_its_document_number() {
    // A typo or a wrong file must fail loudly, not render nothing.
    let error = render(&format!("{MINIMAL}---\nkey: [unclosed\n"), None).unwrap_err();
    assert!(error.to_string().starts_with("document 2"), "{error}");
    let error = render(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
        None,
    )
    .unwrap_err();
    assert!(
        matches!(error, RenderError::NotAnABStore { document: 1, .. }),
        "{error}"
    );
    assert!(matches!(render("", None), Err(RenderError::Empty)));
}

/// `charts/abstore-operator/examples/*.yaml`, when the chart ships them.
fn chart_examples() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("charts/abstore-operator/examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| entry.path())
                .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

#[derive(Debug, Deserialize)]
struct Report {
    results: Vec<Verdict>,
}

#[derive(Debug, Deserialize)]
struct Verdict {
    object: String,
    status: String,
    #[serde(default)]
    error: Option<String>,
}

/// Validates multi-document YAML with `kubernetes-validate` (strict: unknown fields are
/// errors) through the repository's `scripts/k8s_tools.py`. A missing tool fails the test
/// with the install command; it is never skipped.
fn kubernetes_validate(yaml: &str, version: &str) -> Report {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = std::env::var_os("ABSTORE_PYTHON").unwrap_or_else(|| "python3".into());
    let mut child = Command::new(&python)
        .current_dir(&root)
        .args([
            "scripts/k8s_tools.py",
            "kube-validate",
            "--strict",
            "--kubernetes-version",
            version,
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {python:?}: {e}; run scripts/install-test-deps.sh"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(yaml.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "k8s_tools.py kube-validate failed ({}): {}; run scripts/install-test-deps.sh",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn rendered_objects_are_valid_kubernetes_1_28_manifests() {
    // The supported minimum: a field Kubernetes 1.28 does not know would be refused by it.
    let mut inputs: Vec<(String, String)> = vec![
        ("inline minimal".to_owned(), MINIMAL.to_owned()),
        ("inline everything".to_owned(), EVERYTHING.to_owned()),
        ("inline cluster mode".to_owned(), CLUSTER.to_owned()),
    ];
    let examples = chart_examples();
    for path in &examples {
        inputs.push((
            path.display().to_string(),
            std::fs::read_to_string(path).unwrap(),
        ));
    }
    for (what, input) in inputs {
        // Examples may leave the namespace to `kubectl -n`; render the same way.
        let yaml = render(&input, None)
            .or_else(|_| render(&input, Some("default")))
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let report = kubernetes_validate(&yaml, OLDEST_KUBERNETES);
        assert_eq!(report.results.len(), documents(&yaml).len(), "{what}");
        for verdict in &report.results {
            let prometheus = PROMETHEUS_OPERATOR_KINDS
                .iter()
                .any(|kind| verdict.object.contains(&format!("/{kind} ")));
            match verdict.status.as_str() {
                "valid" => {}
                "unknown-kind" if prometheus => {}
                _ => panic!(
                    "{what}: {} is {}: {}",
                    verdict.object,
                    verdict.status,
                    verdict.error.as_deref().unwrap_or_default()
                ),
            }
        }
    }
}

fn run_render(args: &[&str], stdin: &str) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_abstore-operator"))
        .arg("render")
        .args(args)
        .env_remove("ABSTORE_NAMESPACE")
        .env_remove("POD_NAMESPACE")
        .env_remove("ABSTORE_CLUSTER_DOMAIN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn the_render_command_reads_stdin_and_names_a_bad_file() {
    // The CLI is what people and CI run: output on stdout, a clear error and non-zero exit.
    let output = run_render(
        &["-f", "-", "-n", "ab"],
        &MINIMAL.replace("  namespace: ab\n", ""),
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let docs = documents(&String::from_utf8(output.stdout).unwrap());
    assert!(
        docs.iter()
            .any(|doc| kind_and_name(doc) == ("StatefulSet".to_owned(), "shop-redis".to_owned()))
    );

    let output = run_render(&["-f", "/nonexistent/abstore.yaml"], "");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("/nonexistent/abstore.yaml"), "{stderr}");

    let output = run_render(
        &["-f", "-"],
        "apiVersion: abstore.dev/v1alpha1\nkind: ABStore\nmetadata: {name: shop}\nspec: {}\n",
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("stdin") && stderr.contains("metadata.namespace"),
        "{stderr}"
    );
}

#[test]
fn render_for_review_shows_no_secret_values_and_show_secrets_does() {
    // `render` output goes into pull requests and CI logs: Secrets keep their names and keys,
    // not their values, unless asked (--show-secrets).
    let redacted = render(EVERYTHING, None).unwrap();
    let shown = abstore_operator::render::render_with(
        EVERYTHING,
        None,
        abstore_operator::render::SecretValues::Shown,
    )
    .unwrap();
    let secrets = |yaml: &str| -> Vec<serde_yaml::Value> {
        documents(yaml)
            .into_iter()
            .filter(|doc| kind_and_name(doc).0 == "Secret")
            .collect()
    };
    let (hidden, visible) = (secrets(&redacted), secrets(&shown));
    assert!(!hidden.is_empty());
    assert_eq!(hidden.len(), visible.len());
    for (hidden, visible) in hidden.iter().zip(&visible) {
        assert_eq!(kind_and_name(hidden), kind_and_name(visible));
        assert!(hidden.get("data").is_none(), "{hidden:?}");
        let keys: Vec<String> = visible["data"]
            .as_mapping()
            .unwrap()
            .keys()
            .map(|k| k.as_str().unwrap().to_owned())
            .collect();
        assert!(!keys.is_empty());
        assert_eq!(
            hidden["metadata"]["annotations"][abstore_operator::render::REDACTED_ANNOTATION]
                .as_str(),
            Some(keys.join(",").as_str())
        );
    }
    // No password of the shown output (generated afresh) can leak, and no hash of one either.
    assert!(!redacted.contains("password: "));
    assert!(!redacted.contains(" on #"));
}

#[test]
fn the_cluster_domain_and_the_operators_namespace_reach_every_name_and_policy() {
    // A cluster whose DNS domain is not cluster.local: every pod and Service name, the Secrets'
    // URLs, the start scripts and Sentinel's hostnames must use it, or nothing resolves. The
    // stores' NetworkPolicies admit the operator's pods from its own namespace only.
    let output = run_render(
        &[
            "-f",
            "-",
            "--cluster-domain",
            "corp.example",
            "--operator-namespace",
            "platform-ops",
            "--show-secrets",
        ],
        EVERYTHING,
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let rendered = String::from_utf8(output.stdout).unwrap();
    // The Secrets' values (the URLs) are base64 in `data`: searched decoded.
    let mut yaml = rendered.clone();
    for doc in documents(&rendered) {
        if let Some(data) = doc["data"].as_mapping().filter(|_| doc["kind"] == "Secret") {
            for value in data.values() {
                use base64::Engine;
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(value.as_str().unwrap())
                    .unwrap();
                yaml.push_str(&String::from_utf8_lossy(&bytes));
                yaml.push('\n');
            }
        }
    }
    assert!(
        !yaml.contains("cluster.local"),
        "cluster.local left in:\n{yaml}"
    );
    for name in [
        "checkout-sentinel.ab.svc.corp.example",
        "checkout-primary.ab.svc.corp.example",
        "checkout-redis-headless.ab.svc.corp.example",
    ] {
        assert!(yaml.contains(name), "{name} missing");
    }
    let docs = documents(&rendered);
    // Redis's and Sentinel's (the operator never calls the tracking API, whose policy has no
    // operator peer).
    let policies: Vec<&serde_yaml::Value> = docs
        .iter()
        .filter(|doc| {
            doc["kind"] == "NetworkPolicy"
                && doc["metadata"]["labels"]["app.kubernetes.io/component"] != "api"
        })
        .collect();
    assert!(!policies.is_empty());
    for policy in policies {
        let text = serde_yaml::to_string(policy).unwrap();
        assert!(
            text.contains("kubernetes.io/metadata.name: platform-ops"),
            "the operator peer is not limited to its namespace: {text}"
        );
        // No peer selects every namespace.
        assert!(!text.contains("namespaceSelector: {}"), "{text}");
    }

    // Without the flags: cluster.local and abstore-system, where the chart installs.
    let output = run_render(&["-f", "-"], MINIMAL);
    let yaml = String::from_utf8(output.stdout).unwrap();
    assert!(yaml.contains("shop-sentinel.ab.svc.cluster.local"));
    assert!(yaml.contains("kubernetes.io/metadata.name: abstore-system"));

    for (flag, value) in [
        ("--cluster-domain", "Corp.Example"),
        ("--cluster-domain", "corp..example"),
        ("--operator-namespace", "Ops_Team"),
    ] {
        let output = run_render(&["-f", "-", flag, value], MINIMAL);
        assert!(!output.status.success(), "{flag} {value} accepted");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(flag) && stderr.contains(value), "{stderr}");
    }
}

#[test]
fn a_file_backup_is_refused_for_kubernetes_naming_the_field() {
    let output = run_render(
        &["-f", "-"],
        &MINIMAL.replace(
            "spec: {}",
            "spec: {backup: {destination: 'file:///backups/shop'}}",
        ),
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("spec.backup.destination") && stderr.contains("s3://"),
        "{stderr}"
    );
}

/// The file of the issue: two typos kubectl apply refuses.
const TYPOS: &str = "\
apiVersion: abstore.dev/v1alpha1
kind: ABStore
metadata:
  name: shop
  namespace: ab
spec:
  sentinal:
    replicas: 5
  redis:
    replica: 7
";

#[test]
fn unknown_fields_are_refused_by_render_and_local_up_naming_the_path_and_the_nearest_field() {
    // kubectl apply refuses these (strict field validation); rendering the defaults with exit 0
    // would hide both typos until production ran with 3 sentinels and 3 pods.
    let output = run_render(&["-f", "-"], TYPOS);
    assert!(!output.status.success(), "render accepted the typos");
    assert!(output.stdout.is_empty(), "render printed objects anyway");
    let stderr = String::from_utf8_lossy(&output.stderr);
    for expected in [
        "unknown field spec.sentinal (did you mean spec.sentinel?)",
        "unknown field spec.redis.replica (did you mean spec.redis.replicas?)",
    ] {
        assert!(stderr.contains(expected), "{expected:?} not in: {stderr}");
    }

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("store.yaml");
    std::fs::write(&file, TYPOS).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_abstore-operator"))
        .args(["local", "up", "-f"])
        .arg(&file)
        .arg("--dir")
        .arg(dir.path().join("state"))
        .output()
        .unwrap();
    assert!(!output.status.success(), "local up accepted the typos");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&file.display().to_string())
            && stderr.contains("unknown field spec.sentinal (did you mean spec.sentinel?)"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("state").exists(),
        "local up created its directory before refusing the file"
    );
}

#[test]
fn a_cluster_mode_store_is_one_statefulset_of_every_shard_without_sentinels() {
    let yaml = render(CLUSTER, None).unwrap();
    let docs = documents(&yaml);
    let names: Vec<(String, String)> = docs.iter().map(kind_and_name).collect();
    let of = |kind: &str| -> Vec<&str> {
        names
            .iter()
            .filter(|(k, _)| k == kind)
            .map(|(_, n)| n.as_str())
            .collect()
    };
    assert_eq!(of("StatefulSet"), ["shard-redis"]);
    assert_eq!(
        of("Service"),
        ["shard-redis-headless", "shard-cluster", "shard-metrics"]
    );
    assert_eq!(of("PodDisruptionBudget"), ["shard-redis"]);
    assert_eq!(of("NetworkPolicy"), ["shard-redis"]);
    assert!(
        !yaml.contains("sentinel-url"),
        "no Sentinel URL in cluster mode"
    );

    let set = docs.iter().find(|d| d["kind"] == "StatefulSet").unwrap();
    assert_eq!(set["spec"]["replicas"], 6);
    assert_eq!(
        set["spec"]["persistentVolumeClaimRetentionPolicy"]["whenScaled"],
        "Delete"
    );
    let redis = &set["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        redis["command"][1],
        "/etc/abstore/config/start-redis-cluster.sh"
    );
    assert!(
        redis["lifecycle"].is_null(),
        "no Sentinel preStop hand-over"
    );
    let ports: Vec<i64> = redis["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|p| p["containerPort"].as_i64().unwrap())
        .collect();
    assert_eq!(ports, [6379, 16379]);

    let policy = docs.iter().find(|d| d["kind"] == "NetworkPolicy").unwrap();
    let bus = policy["spec"]["ingress"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|rule| rule["ports"][0]["port"] == 16379)
        .expect("the cluster bus is admitted");
    assert_eq!(
        bus["from"].as_sequence().unwrap().len(),
        1,
        "only the store's pods"
    );

    let config = docs.iter().find(|d| d["kind"] == "ConfigMap").unwrap();
    let script = config["data"]["start-redis-cluster.sh"].as_str().unwrap();
    assert!(!script.contains("@@"), "{script}");
    assert!(script.contains("shard-redis-headless.ab.svc.cluster.local"));
    let conf = config["data"]["redis.conf"].as_str().unwrap();
    assert!(conf.contains("cluster-enabled yes") && conf.contains("tls-cluster yes"));

    let backup = docs
        .iter()
        .find(|d| d["kind"] == "CronJob" && d["metadata"]["name"] == "shard-backup")
        .unwrap();
    let args = serde_yaml::to_string(
        &backup["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"],
    )
    .unwrap();
    assert!(
        args.contains(
            "rediss+cluster://backup@shard-cluster.ab.svc.cluster.local:6379?password_file="
        ),
        "{args}"
    );
}
