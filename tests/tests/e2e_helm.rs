//! End-to-end: the path users take (issues 16 and 17). The chart is packaged and pushed to a real
//! OCI registry (Debian's docker-registry on loopback) as the release workflow publishes it, and
//! installed from there with the real Helm SDK (`helm install oci://…/abstore-operator --version
//! <version>`, the README's command, the cluster's admin kubeconfig); the operator runs in a pod from
//! `ghcr.io/abstore/abstore-operator:<version>` — the image `scripts/build-images.sh` builds,
//! imported into the node — instead of as a process on this machine. The operator gets a
//! namespace of its own and watches only the store's (`watchNamespace`), as the README installs
//! it (`abstore-system`, the stores in `experimentation`), so it never touches other tests'
//! stores; its in-cluster config, its DNS to the Redis pods and the chart's RBAC all act from
//! inside the cluster. Then `helm uninstall`.
//!
//! Without a cluster the test prints one line saying it was skipped and why
//! (`ABSTORE_E2E_REQUIRED=1` makes that a failure, as in CI). It needs the images
//! (`scripts/build-images.sh`) and, for the checks of the running process, the node on this
//! machine (as the kit's is).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::net::ToSocketAddrs;
use std::time::{Duration, Instant};

use abstore_tests::k8s::{
    self, Cluster, TestNamespace, http_get_from, poll, store_status, sum_samples, wait_store_ready,
};
use abstore_tests::k8s_helm::{OperatorRelease, label_selector};
use abstore_tests::k8s_store::{
    PodS3, app_access, backup_and_prune_now, container_pid, counter_key, write_more,
};
use abstore_tests::local_store::PlainWriter;
use abstore_tests::{ChartRef, OciRegistry, chart_dir, helm_push};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::Value;

const VERSION: &str = env!("CARGO_PKG_VERSION");
const OPERATOR_IMAGE: &str = "ghcr.io/abstore/abstore-operator";
/// `nonroot` of the images and the chart's `podSecurityContext.runAsUser`.
const NONROOT: u64 = 65532;
/// The pod's start from an image already on the node, then the first list of ABStores
/// (`/readyz`), probed every 10 s; generous for a loaded 2-core machine.
const OPERATOR_AVAILABLE: Duration = Duration::from_secs(180);
/// Helm's deletions, then the operator pod's termination (at most its 30 s grace period).
const UNINSTALLED: Duration = Duration::from_secs(120);
const STORE: &str = "experiments";
const CRD: &str = "customresourcedefinition/abstores.abstore.dev";
const REDIS_PORT: i64 = 6379;
const SENTINEL_PORT: i64 = 26379;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_install_runs_the_operator_image_which_serves_a_store_and_its_jobs_and_helm_uninstall_keeps_the_crd_and_volumes()
 {
    let Some(cluster) = k8s::cluster_with_node("helm install") else {
        return;
    };
    k8s::import_images().unwrap_or_else(|error| panic!("{error}"));
    let s3 = PodS3::start(cluster, "backups").await;
    let operator_ns = TestNamespace::create(cluster, "helm-operator");
    let ns = TestNamespace::create(cluster, "helm-store");
    let store_ns = ns.name.as_str();

    // 1. helm install; the Deployment becomes Available from the operator image, hardened as
    //    the chart's securityContext says, in the pod spec and in the running process.
    let values =
        format!("watchNamespace: {store_ns}\nimage:\n  tag: \"{VERSION}\"\n  pullPolicy: Never\n");
    let crd_before = cluster
        .kubectl(&["get", CRD, "--ignore-not-found", "-o", "name"])
        .unwrap();
    // The chart as a release publishes it: packaged, pushed to an OCI registry, installed from
    // there by version (the registry speaks plain HTTP on loopback; ghcr.io is HTTPS).
    let registry = OciRegistry::start().unwrap_or_else(|error| panic!("{error}"));
    let remote = format!("oci://{}/abstore/charts", registry.host());
    let package = helm_push(&chart_dir(), &remote, true)
        .unwrap_or_else(|error| panic!("{error}"))
        .unwrap_or_else(|error| panic!("helm push {remote}: {error}\n{}", registry.log()));
    assert_eq!(package, format!("abstore-operator-{VERSION}.tgz"));
    let chart = ChartRef::Oci {
        reference: format!("{remote}/abstore-operator"),
        version: VERSION.to_owned(),
        plain_http: true,
    };
    let start = Instant::now();
    let mut release = OperatorRelease::install(cluster, &chart, &operator_ns.name, &values)
        .unwrap_or_else(|error| panic!("{error}"));
    let helm_took = start.elapsed();
    assert_eq!(release.info.status, "deployed", "{:?}", release.info);
    assert_eq!(release.info.app_version, VERSION, "{:?}", release.info);
    // The ClusterRoles for people (aggregated into view, edit and admin) are no permission of
    // the operator's: nothing binds them to its ServiceAccount.
    let is_user_role = |o: &&abstore_tests::k8s_helm::ReleaseObject| {
        !o.object["metadata"]["labels"]["abstore.dev/user-roles"].is_null()
    };
    let user_roles: Vec<&str> = release
        .objects
        .iter()
        .filter(is_user_role)
        .map(|o| o.name.as_str())
        .collect();
    assert_eq!(
        user_roles.len(),
        2,
        "view and edit ClusterRoles for people: {user_roles:?}"
    );
    let kinds: BTreeSet<&str> = release
        .objects
        .iter()
        .filter(|o| !is_user_role(o))
        .map(|o| o.kind.as_str())
        .collect();
    for kind in [
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "Deployment",
        "Service",
        "NetworkPolicy",
    ] {
        assert!(kinds.contains(kind), "the release has no {kind}: {kinds:?}");
    }
    assert!(
        !kinds.contains("ClusterRole") && !kinds.contains("ClusterRoleBinding"),
        "watchNamespace must not grant cluster-wide permissions: {kinds:?}"
    );
    cluster
        .kubectl(&["wait", "--for=condition=Established", "--timeout=60s", CRD])
        .unwrap_or_else(|error| panic!("helm install left no usable CRD: {error}"));
    println!(
        "CRD {}",
        if crd_before.is_empty() {
            "created by helm install from crds/"
        } else {
            "already there (Helm skips an existing one)"
        }
    );
    release.wait_available(OPERATOR_AVAILABLE).await;
    let install_to_available = start.elapsed();

    let pods = release.pods().unwrap();
    assert_eq!(pods.len(), 1, "one operator pod: {pods:#?}");
    let pod = &pods[0];
    assert_pod_runs_the_image_hardened(pod, &release);
    let pod_name = pod["metadata"]["name"].as_str().unwrap().to_owned();
    let uid = pod["metadata"]["uid"].as_str().unwrap();
    let pid = container_pid(uid, "abstore-operator").unwrap_or_else(|| {
        panic!(
            "no abstore-operator process of pod {pod_name} on this machine (the node must run here)"
        )
    });
    let process = ProcessView::read(pid);
    println!("operator process {pid}: {process:?}");
    assert!(
        process.uids.iter().all(|&id| id == NONROOT),
        "uids {:?}",
        process.uids
    );
    assert!(
        process.gids.iter().all(|&id| id == NONROOT),
        "gids {:?}",
        process.gids
    );
    assert!(
        process.root_read_only,
        "the root filesystem is writable: {process:?}"
    );
    assert!(
        process.no_new_privs,
        "allowPrivilegeEscalation: {process:?}"
    );
    assert_eq!(
        process.effective_capabilities, 0,
        "capabilities: {process:?}"
    );
    assert_eq!(
        process.seccomp, 2,
        "seccomp RuntimeDefault is a filter: {process:?}"
    );

    // The metrics Service reaches the pod by its DNS name, as Prometheus would (once the
    // endpoint has reached kube-proxy, a moment after the pod is ready).
    let metrics = MetricsService::of(&release);
    poll(
        "/readyz through the metrics Service",
        Duration::from_secs(60),
        || async {
            match metrics.get("/readyz")? {
                (200, _) => Ok(()),
                (code, body) => Err(format!("{code}: {body}")),
            }
        },
    )
    .await
    .unwrap_or_else(|error| panic!("{error}"));

    // The operator's NetworkPolicy selects its pod and lets it reach the API server's endpoint.
    let policy = &release.of_kind("NetworkPolicy")[0].object;
    let selected = select_pods(cluster, release.namespace(), &policy["spec"]["podSelector"]);
    assert_eq!(selected, BTreeSet::from([pod_name.clone()]), "{policy}");
    let allowed = egress_ports(policy);
    let api_ports = cluster
        .kubectl(&[
            "get",
            "endpoints",
            "kubernetes",
            "-n",
            "default",
            "-o",
            "jsonpath={.subsets[*].ports[*].port}",
        ])
        .unwrap();
    for port in api_ports.split_whitespace().chain(["443"]) {
        let port: i64 = port.parse().unwrap();
        assert!(
            allowed.contains(&port),
            "the operator's NetworkPolicy blocks the API server on port {port}: {allowed:?}"
        );
    }

    // 2. A store in the watched namespace becomes Ready with a primary: the in-cluster config,
    //    the pod's DNS to the Redis pods and the chart's RBAC, from inside the cluster.
    let store = format!(
        "apiVersion: abstore.dev/v1alpha1\nkind: ABStore\nmetadata:\n  name: {STORE}\nspec:\n{}",
        indent(&s3.backup_spec(cluster, store_ns, "backup-s3", "helm"))
    );
    let applied = Instant::now();
    cluster
        .kubectl_with_input(&["apply", "-n", store_ns, "-f", "-"], Some(&store))
        .unwrap_or_else(|error| panic!("{error}"));
    let status = wait_store_ready(cluster, store_ns, STORE).await;
    let store_ready = applied.elapsed();
    println!("store Ready, primary {}", status["primary"]);
    let reconciles = poll(
        "reconciles in the metrics",
        Duration::from_secs(30),
        || async {
            let text = metrics.get("/metrics").map(|(_, body)| body)?;
            let runs = sum_samples(&text, "abstore_operator_reconcile_runs_total", &[]);
            if runs > 0.0 {
                Ok(runs)
            } else {
                Err(format!("{runs}"))
            }
        },
    )
    .await
    .unwrap_or_else(|error| panic!("{error}"));

    // The NetworkPolicies, with live objects and the API server choosing what they select (the
    // kit does not enforce them): the operator's egress reaches every Redis and Sentinel pod of
    // the store, and every policy of the store lets the operator's pod in.
    let store_pods = select_pods(
        cluster,
        store_ns,
        &serde_json::json!({"matchLabels": {"app.kubernetes.io/instance": STORE},
            "matchExpressions": [{"key": "app.kubernetes.io/component", "operator": "In",
                "values": ["redis", "sentinel"]}]}),
    );
    assert_eq!(
        store_pods.len(),
        6,
        "3 Redis and 3 Sentinel pods: {store_pods:?}"
    );
    let reachable = egress_pods(cluster, policy, store_ns, &[REDIS_PORT, SENTINEL_PORT]);
    let unreachable: Vec<_> = store_pods.difference(&reachable).collect();
    assert!(
        unreachable.is_empty(),
        "the operator's NetworkPolicy does not let it reach {unreachable:?}: {policy}"
    );
    let store_policies: Value = serde_json::from_str(
        &cluster
            .kubectl(&["get", "networkpolicies", "-n", store_ns, "-o", "json"])
            .unwrap(),
    )
    .unwrap();
    let store_policies = store_policies["items"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(!store_policies.is_empty(), "the store has no NetworkPolicy");
    // An impostor: a pod in the store's namespace with the operator's pod label, which anyone
    // who may create pods there can set. The policies admit the operator's namespace only.
    cluster
        .apply(&format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: impostor\n  namespace: {store_ns}\n  labels:\n    app.kubernetes.io/name: abstore-operator\nspec:\n  containers:\n    - name: pause\n      image: registry.k8s.io/pause:3.9\n      imagePullPolicy: Never\n"
        ))
        .unwrap_or_else(|error| panic!("{error}"));
    for store_policy in &store_policies {
        let name = &store_policy["metadata"]["name"];
        let ports: Vec<i64> = ingress_ports(store_policy)
            .into_iter()
            .filter(|port| [REDIS_PORT, SENTINEL_PORT].contains(port))
            .collect();
        assert!(!ports.is_empty(), "NetworkPolicy {name}: {store_policy}");
        for port in ports {
            // A control: the port is not open to every pod.
            assert!(
                !admits(
                    cluster,
                    store_policy,
                    port,
                    release.namespace(),
                    "not-the-operator"
                ),
                "NetworkPolicy {name} admits any pod on {port}: {store_policy}"
            );
            assert!(
                !admits(cluster, store_policy, port, store_ns, "impostor"),
                "NetworkPolicy {name} admits a pod that only carries the operator's label on {port}: {store_policy}"
            );
            assert!(
                admits(cluster, store_policy, port, release.namespace(), &pod_name),
                "NetworkPolicy {name} does not let the operator's pod {pod_name} reach port {port}: {store_policy}"
            );
        }
    }

    // 3. The backup (to S3 on the node IP) and prune Jobs from the jobs image, against the
    //    store's pods; the operator in its pod puts them into the status and its metrics.
    let access = app_access(cluster, store_ns, STORE);
    let mut writer = PlainWriter::start(&access.primary_url, &counter_key("helm"));
    write_more(&writer, 100, Duration::from_secs(60)).await;
    let written = writer.stop().await.acked;
    let jobs = backup_and_prune_now(cluster, store_ns, STORE).await;
    println!(
        "lastBackup {}, lastPrune {}; backup of {written} increments: {}",
        jobs.status["lastBackup"], jobs.status["lastPrune"], jobs.backup_summary
    );
    assert!(
        jobs.backup_summary["keys"].as_u64().unwrap_or_default() >= 1,
        "backup summary: {}",
        jobs.backup_summary
    );
    poll(
        "the backup in the operator's metrics",
        Duration::from_secs(30),
        || async {
            let text = metrics.get("/metrics").map(|(_, body)| body)?;
            let at = sum_samples(
                &text,
                "abstore_operator_backup_last_success_timestamp_seconds",
                &[("store", STORE)],
            );
            if at > 0.0 {
                Ok(())
            } else {
                Err(format!("{at}"))
            }
        },
    )
    .await
    .unwrap_or_else(|error| panic!("{error}"));
    let restarts = release.pods().unwrap()[0]["status"]["containerStatuses"][0]["restartCount"]
        .as_u64()
        .unwrap_or_default();
    assert_eq!(restarts, 0, "the operator container restarted");
    let busy = ProcessView::read(pid);
    println!(
        "operator resident memory after the store and its jobs: {} MiB",
        busy.rss_kib / 1024
    );

    // 4. helm uninstall: every object of the release goes (the Deployment, the ServiceAccount,
    //    the Role and RoleBinding in the store's namespace, ...); the operator stops on SIGTERM;
    //    the CRD (crds/, which Helm never deletes), the store and its volumes stay.
    // Warnings are not failures (a conflict while the pods start is retried), but they are
    // what to read first when something is slow.
    let log = cluster
        .kubectl(&["logs", "-n", release.namespace(), &pod_name])
        .unwrap();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|line| line.contains(" WARN ") || line.contains(" ERROR "))
        .collect();
    println!(
        "operator log: {} lines, {} warnings or errors{}",
        log.lines().count(),
        warnings.len(),
        warnings
            .iter()
            .map(|line| format!("\n  {}", line.chars().take(240).collect::<String>()))
            .collect::<String>()
    );

    // A control: before the uninstall every object of the manifest is found.
    assert_eq!(
        release.remaining().unwrap().len(),
        release.objects.len(),
        "{:?}",
        release.objects
    );
    let claims_before = claims(cluster, store_ns);
    assert_eq!(claims_before.len(), 3, "{claims_before:?}");
    let exit = watch_exit(cluster, release.namespace(), &pod_name).await;
    let uninstalling = Instant::now();
    let info = release
        .uninstall()
        .unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(info.status, "uninstalled", "{info:?}");
    poll(
        "the release's objects and pod to go",
        UNINSTALLED,
        || async {
            let mut left = release.remaining()?;
            left.extend(release.pods()?.iter().map(|pod| {
                format!(
                    "Pod/{} ({})",
                    pod["metadata"]["name"], pod["status"]["phase"]
                )
            }));
            if left.is_empty() {
                Ok(())
            } else {
                Err(left.join(", "))
            }
        },
    )
    .await
    .unwrap_or_else(|error| panic!("{error}"));
    let uninstall_took = uninstalling.elapsed();
    let exit = tokio::time::timeout(Duration::from_secs(30), exit)
        .await
        .expect("the watch of the operator pod did not end after the pod went")
        .unwrap();
    println!("operator container at deletion: {exit:?}");
    assert_eq!(
        exit.map(|(code, _)| code),
        Some(0),
        "the operator must exit by itself on SIGTERM, not be killed at the end of its grace period"
    );
    let history = cluster
        .kubectl(&[
            "get",
            "secrets",
            "-n",
            release.namespace(),
            "-l",
            &format!("owner=helm,name={}", release.name()),
            "-o",
            "name",
        ])
        .unwrap();
    assert!(
        history.is_empty(),
        "Helm kept the release history: {history}"
    );
    cluster
        .kubectl(&["get", CRD, "-o", "name"])
        .unwrap_or_else(|error| panic!("helm uninstall removed the CRD: {error}"));
    assert_eq!(claims(cluster, store_ns), claims_before, "the volumes");
    let left = store_status(cluster, store_ns, STORE).unwrap_or_else(|error| {
        panic!("helm uninstall removed the store, which the user created: {error}")
    });
    assert_eq!(left["phase"], "Ready", "{left}");

    println!(
        "helm install {:.1} s, install → Available {:.1} s, store Ready {:.1} s after apply ({reconciles} reconciles), backup and prune Jobs {:.1} s, uninstall → every object and the pod gone {:.1} s",
        helm_took.as_secs_f64(),
        install_to_available.as_secs_f64(),
        store_ready.as_secs_f64(),
        jobs.took.as_secs_f64(),
        uninstall_took.as_secs_f64()
    );
}

/// The pod spec says what the chart says: the operator image at the workspace version, never
/// pulled, UID 65532, a read-only root, no privilege escalation, no capabilities; its container
/// is ready and has not restarted.
fn assert_pod_runs_the_image_hardened(pod: &Value, release: &OperatorRelease) {
    let spec = &pod["spec"];
    let container = &spec["containers"][0];
    assert_eq!(container["image"], format!("{OPERATOR_IMAGE}:{VERSION}"));
    assert_eq!(container["imagePullPolicy"], "Never");
    let service_account = &release.of_kind("ServiceAccount")[0].name;
    assert_eq!(spec["serviceAccountName"], service_account.as_str());
    assert_eq!(spec["securityContext"]["runAsUser"], NONROOT);
    assert_eq!(spec["securityContext"]["runAsGroup"], NONROOT);
    assert_eq!(spec["securityContext"]["runAsNonRoot"], true);
    let security = &container["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], true, "{security}");
    assert_eq!(security["allowPrivilegeEscalation"], false, "{security}");
    assert_eq!(
        security["capabilities"]["drop"],
        serde_json::json!(["ALL"]),
        "{security}"
    );
    let status = &pod["status"]["containerStatuses"][0];
    assert_eq!(status["ready"], true, "{status}");
    assert_eq!(status["restartCount"], 0, "{status}");
    assert_eq!(
        status["image"],
        format!("{OPERATOR_IMAGE}:{VERSION}"),
        "{status}"
    );
}

/// What the kernel says about a process: its ids, privileges and root mount.
#[derive(Debug)]
struct ProcessView {
    /// Real, effective, saved and filesystem user ids.
    uids: Vec<u64>,
    gids: Vec<u64>,
    no_new_privs: bool,
    effective_capabilities: u64,
    /// 0 none, 1 strict, 2 filter.
    seccomp: u64,
    /// The container's `/` is mounted read-only.
    root_read_only: bool,
    /// Resident memory, against the chart's memory limit.
    rss_kib: u64,
}

impl ProcessView {
    fn read(pid: u32) -> ProcessView {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let field = |name: &str| -> String {
            status
                .lines()
                .find_map(|line| line.strip_prefix(&format!("{name}:")))
                .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
                .trim()
                .to_owned()
        };
        let ids = |name: &str| -> Vec<u64> {
            field(name)
                .split_whitespace()
                .map(|id| id.parse().unwrap())
                .collect()
        };
        // mountinfo: id parent major:minor root mount-point options ...; the last mount on `/`
        // is the one the process sees.
        let mounts = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
        let root_options = mounts
            .lines()
            .rev()
            .find_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                (fields.get(4) == Some(&"/")).then(|| fields.get(5).copied().unwrap_or_default())
            })
            .unwrap_or_else(|| panic!("no / in /proc/{pid}/mountinfo"));
        ProcessView {
            uids: ids("Uid"),
            gids: ids("Gid"),
            no_new_privs: field("NoNewPrivs") == "1",
            effective_capabilities: u64::from_str_radix(&field("CapEff"), 16).unwrap(),
            seccomp: field("Seccomp").parse().unwrap(),
            root_read_only: root_options.split(',').any(|option| option == "ro"),
            rss_kib: field("VmRSS")
                .trim_end_matches("kB")
                .trim()
                .parse()
                .unwrap(),
        }
    }
}

/// The release's metrics Service, by its cluster DNS name.
struct MetricsService {
    host: String,
    port: u16,
}

impl MetricsService {
    fn of(release: &OperatorRelease) -> MetricsService {
        let service = &release.of_kind("Service")[0];
        MetricsService {
            host: format!("{}.{}.svc.cluster.local", service.name, release.namespace()),
            port: service.object["spec"]["ports"][0]["port"]
                .as_u64()
                .and_then(|port| u16::try_from(port).ok())
                .unwrap(),
        }
    }

    fn get(&self, path: &str) -> Result<(u16, String), String> {
        let addr = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|error| format!("resolving {}: {error}", self.host))?
            .next()
            .ok_or_else(|| format!("{} has no address", self.host))?;
        http_get_from(addr, path)
    }
}

/// Names of the pods in `ns` that `selector` selects, as the API server evaluates it.
fn select_pods(cluster: &Cluster, ns: &str, selector: &Value) -> BTreeSet<String> {
    let selector = label_selector(selector).unwrap();
    let names = cluster
        .kubectl(&[
            "get",
            "pods",
            "-n",
            ns,
            "-l",
            &selector,
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ])
        .unwrap();
    names.split_whitespace().map(str::to_owned).collect()
}

/// Whether a NetworkPolicy peer of a policy in `policy_ns` selects pod `pod` in `ns`.
fn peer_selects(cluster: &Cluster, peer: &Value, policy_ns: &str, ns: &str, pod: &str) -> bool {
    if peer.get("ipBlock").is_some() {
        return false;
    }
    let namespace_matches = match peer.get("namespaceSelector") {
        Some(selector) => {
            let selector = label_selector(selector).unwrap();
            let found = cluster
                .kubectl(&["get", "namespaces", "-l", &selector, "-o", "name"])
                .unwrap();
            found.lines().any(|line| line == format!("namespace/{ns}"))
        }
        None => policy_ns == ns,
    };
    let pod_matches = match peer.get("podSelector") {
        Some(selector) => select_pods(cluster, ns, selector).contains(pod),
        None => true,
    };
    namespace_matches && pod_matches
}

/// Every TCP port the policy's egress rules name.
fn egress_ports(policy: &Value) -> BTreeSet<i64> {
    rule_ports(&policy["spec"]["egress"])
}

/// Every port a list of NetworkPolicy rules names.
fn rule_ports(rules: &Value) -> BTreeSet<i64> {
    rules
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|rule| rule["ports"].as_array().cloned().unwrap_or_default())
        .filter_map(|port| port["port"].as_i64())
        .collect()
}

/// The pods of `ns` an egress rule of `policy` lets the policy's pods reach on every one of
/// `ports` (a rule without ports covers every port, one without peers every destination).
fn egress_pods(cluster: &Cluster, policy: &Value, ns: &str, ports: &[i64]) -> BTreeSet<String> {
    let policy_ns = policy["metadata"]["namespace"].as_str().unwrap_or_default();
    let candidates = select_pods(cluster, ns, &serde_json::json!({}));
    let mut reached = BTreeSet::new();
    for rule in policy["spec"]["egress"].as_array().into_iter().flatten() {
        let covered = match rule["ports"].as_array() {
            None => true,
            Some(_) => {
                let named = rule_ports(&Value::Array(vec![rule.clone()]));
                ports.iter().all(|port| named.contains(port))
            }
        };
        if !covered {
            continue;
        }
        for pod in &candidates {
            let selected = match rule["to"].as_array() {
                None => true,
                Some(peers) => peers
                    .iter()
                    .any(|peer| peer_selects(cluster, peer, policy_ns, ns, pod)),
            };
            if selected {
                reached.insert(pod.clone());
            }
        }
    }
    reached
}

/// Every TCP port the policy's ingress rules name.
fn ingress_ports(policy: &Value) -> BTreeSet<i64> {
    rule_ports(&policy["spec"]["ingress"])
}

/// Whether a policy with Ingress lets pod `pod` of namespace `ns` in on `port`: a rule for that
/// port (or every port) whose peers select the pod (or that names no peers).
fn admits(cluster: &Cluster, policy: &Value, port: i64, ns: &str, pod: &str) -> bool {
    let policy_ns = policy["metadata"]["namespace"].as_str().unwrap_or_default();
    policy["spec"]["ingress"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|rule| {
            rule["ports"]
                .as_array()
                .is_none_or(|ports| ports.iter().any(|p| p["port"].as_i64() == Some(port)))
        })
        .any(|rule| match rule["from"].as_array() {
            None => true,
            Some(peers) => peers
                .iter()
                .any(|peer| peer_selects(cluster, peer, policy_ns, ns, pod)),
        })
}

/// The names and phases of the PersistentVolumeClaims in `ns`.
fn claims(cluster: &Cluster, ns: &str) -> BTreeSet<String> {
    let text = cluster
        .kubectl(&[
            "get",
            "pvc",
            "-n",
            ns,
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}={.status.phase} {end}",
        ])
        .unwrap();
    text.split_whitespace().map(str::to_owned).collect()
}

/// Watches pod `name` until it is deleted and yields its container's last terminated state
/// (exit code, reason) — the kubelet reports it before the pod object goes.
async fn watch_exit(
    cluster: &Cluster,
    ns: &str,
    name: &str,
) -> tokio::task::JoinHandle<Option<(i32, String)>> {
    let pods: Api<Pod> = Api::namespaced(cluster.client().await, ns);
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut stream = watcher(pods, config).default_backoff().boxed();
    // Established (the initial list done) before the uninstall starts.
    loop {
        match stream.next().await {
            Some(Ok(watcher::Event::InitDone)) => break,
            Some(Ok(_)) => {}
            Some(Err(error)) => panic!("watching pod {name}: {error}"),
            None => panic!("the watch of pod {name} ended before it started"),
        }
    }
    let mut last = None;
    tokio::spawn(async move {
        while let Some(event) = stream.next().await {
            let (pod, deleted) = match event {
                Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => (pod, false),
                Ok(watcher::Event::Delete(pod)) => (pod, true),
                _ => continue,
            };
            let terminated = pod
                .status
                .and_then(|status| status.container_statuses)
                .and_then(|statuses| statuses.into_iter().next())
                .and_then(|status| status.state)
                .and_then(|state| state.terminated);
            if let Some(terminated) = terminated {
                last = Some((terminated.exit_code, terminated.reason.unwrap_or_default()));
            }
            if deleted {
                break;
            }
        }
        last
    })
}

/// `text` indented by two spaces (a block under `spec:`).
fn indent(text: &str) -> String {
    text.lines().map(|line| format!("  {line}\n")).collect()
}
