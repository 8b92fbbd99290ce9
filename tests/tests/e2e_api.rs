//! The tracking API on a real Kubernetes (issue 21; the ../shared/k8s kit with a node): the
//! chart's RBAC and `abstore-operator run` turn `spec.api` into a Deployment of the
//! `ghcr.io/abstore/abstore-api` image (built offline by scripts/build-images.sh, imported into
//! the node), logging in to Redis as the `api` ACL user with its measured grant. Events tracked
//! through the `<n>-api` Service by its cluster DNS name — across the deletion of one API pod,
//! resending what was not answered 200 — are read back exactly through the API key; the pods run
//! locked down; a rotated key Secret reaches the running pods without a rollout; disabling the
//! API removes its objects.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use abstore_tests::api::read_json;
use abstore_tests::k8s::{self, OperatorSetup, poll, wait_store_ready};
use serde_json::{Value, json};

const API_READY: Duration = Duration::from_secs(240);
const STORE: &str = "experiments";
const KEY: &str = "e2e-api-key-0123456789abcdef";

fn store_yaml(api_enabled: bool) -> String {
    format!(
        "apiVersion: abstore.dev/v1alpha1\nkind: ABStore\nmetadata:\n  name: {STORE}\nspec:\n  redis: {{replicas: 2}}\n  sentinel: {{downAfterMilliseconds: 1000, failoverTimeoutMilliseconds: 10000}}\n  api:\n    enabled: {api_enabled}\n    replicas: 2\n    apiKeySecret: {{name: {STORE}-api-key}}\n    allowedOrigins: ['https://shop.example']\n"
    )
}

/// Polls the Deployment until `pods` pods of its current template are available.
async fn wait_deployment(cluster: &k8s::Cluster, ns: &str, pods: usize) -> Value {
    poll("the API's Deployment available", API_READY, || async {
        let out = cluster
            .kubectl(&[
                "get",
                "deployment",
                &format!("{STORE}-api"),
                "-n",
                ns,
                "-o",
                "json",
            ])
            .map_err(|e| e.to_string())?;
        let deployment: Value = serde_json::from_str(&out).map_err(|e| e.to_string())?;
        let status = &deployment["status"];
        let want = json!(pods);
        if status["availableReplicas"] == want
            && status["updatedReplicas"] == want
            && status["replicas"] == want
        {
            Ok(deployment)
        } else {
            Err(format!("status: {status}"))
        }
    })
    .await
    .unwrap_or_else(|error| panic!("{error}"))
}

/// One `track` until it is answered 200: a 503 (no primary, or WAIT not met) or a connection
/// the Service sent to a pod that is going away is retried with the same uuid, which the
/// API's dedup keeps counted once. Returns the attempts that were not 200.
async fn track(client: &reqwest::Client, base: &str, event: (&str, &str, &str)) -> usize {
    let (variant, name, uuid) = event;
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut failed = 0;
    loop {
        let answer = client
            .get(format!("{base}/track"))
            .query(&[
                ("experiment", "checkout"),
                ("variant", variant),
                ("event", name),
                ("uuid", uuid),
            ])
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        match answer {
            Ok(response) if response.status() == 200 => return failed,
            Ok(response) => {
                let status = response.status();
                assert!(
                    status == 503,
                    "track {event:?}: {status} {}",
                    response.text().await.unwrap_or_default()
                );
            }
            Err(error) => assert!(
                error.is_connect() || error.is_timeout() || error.is_request(),
                "track {event:?}: {error}"
            ),
        }
        failed += 1;
        assert!(
            Instant::now() < deadline,
            "track {event:?} never answered 200"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tracking_api_runs_from_its_image_and_counts_every_event_through_the_service() {
    let Some(cluster) = k8s::cluster_with_node("tracking API") else {
        return;
    };
    k8s::import_images().unwrap_or_else(|error| panic!("{error}"));
    let setup = OperatorSetup::start(cluster, "api", "").await;
    let ns = setup.ns.name.as_str();

    cluster
        .kubectl(&[
            "create",
            "secret",
            "generic",
            &format!("{STORE}-api-key"),
            "-n",
            ns,
            &format!("--from-literal=api-key={KEY}"),
        ])
        .unwrap_or_else(|error| panic!("{error}"));
    cluster
        .kubectl_with_input(&["apply", "-n", ns, "-f", "-"], Some(&store_yaml(true)))
        .unwrap_or_else(|error| panic!("{error}"));
    wait_store_ready(cluster, ns, STORE).await;
    let deployment = wait_deployment(cluster, ns, 2).await;
    // The store's status and `kubectl get abs` say so (the Deployment's status reaches the
    // operator through its watch).
    poll("status.api 2/2", Duration::from_secs(60), || async {
        let status = k8s::store_status(cluster, ns, STORE)?;
        if status["api"] == "2/2" {
            Ok(())
        } else {
            Err(format!("status.api: {}", status["api"]))
        }
    })
    .await
    .unwrap_or_else(|error| panic!("{error}"));
    let table = cluster.kubectl(&["get", "abs", STORE, "-n", ns]).unwrap();
    assert!(table.contains("API"), "{table}");

    // The pods run the image as 65532 with a read-only root and no API token, and hold only the
    // api user's password and the key.
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(
        container["image"],
        abstore_operator::crd::DEFAULT_API_IMAGE,
        "{container}"
    );
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(pod["securityContext"]["runAsUser"], 65532);
    assert_eq!(pod["automountServiceAccountToken"], false);
    let secrets: Vec<&str> = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["secret"]["secretName"].as_str())
        .collect();
    assert_eq!(
        secrets,
        [format!("{STORE}-user-api"), format!("{STORE}-api-key")]
    );

    // Through the Service, by its cluster DNS name, as an application in the cluster (or an
    // Ingress controller) reaches it.
    let base = format!("http://{STORE}-api.{ns}.svc.cluster.local");
    let client = reqwest::Client::new();
    let ready = client.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);

    // 60 users, two variants; every third buys; every fifth event sent twice. Half-way, one API
    // pod is deleted: the Service moves on to the other and the Deployment replaces it.
    let mut expected: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut retried = 0;
    let pods = cluster
        .kubectl(&[
            "get",
            "pods",
            "-n",
            ns,
            "-l",
            "app.kubernetes.io/component=api",
            "-o",
            "jsonpath={.items[0].metadata.name}",
        ])
        .unwrap();
    for user in 0..60 {
        if user == 30 {
            cluster
                .kubectl(&["delete", "pod", &pods, "-n", ns, "--wait=false"])
                .unwrap_or_else(|error| panic!("{error}"));
        }
        let variant = if user % 2 == 0 { "red" } else { "blue" };
        let uuid = format!("user-{user}");
        let mut events = vec![("participate", uuid.clone())];
        if user % 3 == 0 {
            events.push(("buy", uuid.clone()));
        }
        for (n, (name, uuid)) in events.iter().enumerate() {
            retried += track(&client, &base, (variant, name, uuid)).await;
            if (user + n) % 5 == 0 {
                retried += track(&client, &base, (variant, name, uuid)).await;
            }
            *expected
                .entry(((*name).to_owned(), variant.to_owned()))
                .or_default() += 1;
        }
    }
    println!("tracked 60 users through the Service; {retried} attempts were retried");

    // Lamed's shape, exact: each uuid once per counter.
    let unauthorized = client
        .get(format!("{base}/experiment"))
        .query(&[("experiment", "checkout")])
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.status(), 403);
    let results = read_json(
        &client,
        &format!("{base}/experiment?experiment=checkout"),
        KEY,
    )
    .await;
    let buy = results
        .as_array()
        .unwrap()
        .iter()
        .find(|goal| goal["goal"] == "buy")
        .unwrap_or_else(|| panic!("no goal buy in {results:#}"));
    let mut rows: Vec<(String, u64, u64)> = buy["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            (
                row["label"].as_str().unwrap().to_owned(),
                row["successes"].as_u64().unwrap(),
                row["trials"].as_u64().unwrap(),
            )
        })
        .collect();
    rows.sort();
    let want = |variant: &str| {
        (
            variant.to_owned(),
            expected[&("buy".to_owned(), variant.to_owned())],
            expected[&("participate".to_owned(), variant.to_owned())],
        )
    };
    assert_eq!(rows, [want("blue"), want("red")], "{results:#}");
    assert_eq!((rows[0].2, rows[1].2), (30, 30));

    // CORS for the configured origin only.
    for (origin, allowed) in [
        ("https://shop.example", true),
        ("https://evil.example", false),
    ] {
        let preflight = client
            .request(reqwest::Method::OPTIONS, format!("{base}/track"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .send()
            .await
            .unwrap();
        let header = preflight
            .headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(
            header.as_deref() == Some(origin),
            allowed,
            "{origin}: {header:?}"
        );
    }

    // The deleted pod was replaced.
    wait_deployment(cluster, ns, 2).await;

    // A rotated key: the Secret rewritten, the running pods take it from their mounted volume
    // (the kubelet refreshes it; the API reads it every 2 s): no rollout, the old key refused.
    const ROTATED: &str = "e2e-rotated-key-fedcba9876543210";
    let secret = cluster
        .kubectl(&[
            "create",
            "secret",
            "generic",
            &format!("{STORE}-api-key"),
            "-n",
            ns,
            &format!("--from-literal=api-key={ROTATED}"),
            "--dry-run=client",
            "-o",
            "yaml",
        ])
        .unwrap_or_else(|error| panic!("{error}"));
    let generation = deployment["metadata"]["generation"].clone();
    cluster
        .kubectl_with_input(&["apply", "-n", ns, "-f", "-"], Some(&secret))
        .unwrap_or_else(|error| panic!("{error}"));
    let read = |key: &'static str| {
        client
            .get(format!("{base}/v1/experiments"))
            .header("x-api-key", key)
            .send()
    };
    // Both pods: a run of answers through the Service, all with the new key.
    poll(
        "the rotated key in use",
        Duration::from_secs(180),
        || async {
            for _ in 0..10 {
                let status = read(ROTATED).await.map_err(|e| e.to_string())?.status();
                if status != 200 {
                    return Err(format!("new key: {status}"));
                }
            }
            Ok(())
        },
    )
    .await
    .unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(read(KEY).await.unwrap().status(), 403, "the old key");
    let after = wait_deployment(cluster, ns, 2).await;
    assert_eq!(
        after["metadata"]["generation"], generation,
        "no rollout for a new key"
    );

    // Disabled: the Deployment, Service, PDB and NetworkPolicy go; the store stays.
    cluster
        .kubectl_with_input(&["apply", "-n", ns, "-f", "-"], Some(&store_yaml(false)))
        .unwrap_or_else(|error| panic!("{error}"));
    poll(
        "the API's objects removed",
        Duration::from_secs(120),
        || async {
            let left = cluster
                .kubectl(&[
                    "get",
                    "deployments,services,poddisruptionbudgets,networkpolicies",
                    "-n",
                    ns,
                    "-l",
                    "app.kubernetes.io/component=api",
                    "-o",
                    "name",
                ])
                .map_err(|e| e.to_string())?;
            if left.trim().is_empty() {
                Ok(())
            } else {
                Err(left)
            }
        },
    )
    .await
    .unwrap_or_else(|error| panic!("{error}"));
    let status = k8s::store_status(cluster, ns, STORE).unwrap();
    assert_eq!(status["phase"], "Ready", "{status}");
}
