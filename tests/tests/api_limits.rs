//! What guards the tracking API's public route, against the `abstore-api` binary: CORS only for
//! the configured origins, a per-client rate limit answered with 429 and `Retry-After`, and a
//! cap on request bodies (413).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use abstore_tests::RedisServer;
use abstore_tests::api::ApiProcess;

const ORIGIN: &str = "https://shop.example";
/// What every `track` answer, preflight or not, varies by.
const VARY: &str = "origin, access-control-request-method, access-control-request-headers";

fn vary(response: &reqwest::Response) -> String {
    let values: Vec<&str> = response
        .headers()
        .get_all("vary")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    values.join(", ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn track_allows_only_configured_origins_limits_each_client_and_caps_bodies() {
    let redis = RedisServer::start_default().unwrap();
    let api = ApiProcess::start(&redis, &["--allowed-origins", ORIGIN, "--rate-limit", "1"]).await;
    let client = reqwest::Client::new();
    let track = format!(
        "{}/track?experiment=button&variant=red&event=participate&uuid=u-1",
        api.base
    );

    // CORS: a preflight from the configured origin is allowed, from another it is not.
    for (origin, allowed) in [(ORIGIN, true), ("https://evil.example", false)] {
        let preflight = client
            .request(reqwest::Method::OPTIONS, &track)
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .send()
            .await
            .unwrap();
        let allow = preflight
            .headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(
            allow.as_deref(),
            allowed.then_some(origin),
            "preflight from {origin}"
        );
        // The answer depends on these request headers: caches must key on them.
        assert_eq!(vary(&preflight), VARY, "preflight from {origin}");
    }

    // Rate: 1 per second, bursts of 2: of ten immediate calls the first two pass, then 429.
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..10 {
        let response = client
            .get(&track)
            .header("origin", ORIGIN)
            .send()
            .await
            .unwrap();
        assert_eq!(vary(&response), VARY, "track from {ORIGIN}");
        if response.status() == 200 {
            assert_eq!(
                response
                    .headers()
                    .get("access-control-allow-origin")
                    .unwrap(),
                ORIGIN
            );
        }
        if response.status() == 429 {
            retry_after = response
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned());
        }
        statuses.push(response.status().as_u16());
    }
    assert_eq!(&statuses[..2], [200, 200], "{statuses:?}");
    assert!(statuses.contains(&429), "{statuses:?}");
    assert_eq!(retry_after.as_deref(), Some("1"));

    // A body over the cap is refused before it is read (an API with the default rate limit).
    let api = ApiProcess::start(&redis, &[]).await;
    let big = format!(
        "experiment=button&variant=red&event=participate&uuid={}",
        "x".repeat(20_000)
    );
    let response = client
        .post(format!("{}/track", api.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);

    // Only GET and POST track: no other method records (a HEAD has no side effects).
    for method in [
        reqwest::Method::HEAD,
        reqwest::Method::PUT,
        reqwest::Method::DELETE,
    ] {
        let response = client
            .request(method.clone(), format!("{}/track", api.base))
            .query(&[
                ("experiment", "button"),
                ("variant", "red"),
                ("event", "participate"),
                ("uuid", "u-head"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 405, "{method}");
        assert_eq!(response.headers().get("allow").unwrap(), "GET,POST");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_key_in_the_key_file_replaces_the_old_one_without_a_restart() {
    // What a rotated Kubernetes Secret looks like to the pod: the mounted file changes.
    use abstore_tests::api::API_KEY;
    use abstore_tests::k8s::poll;
    let redis = RedisServer::start_default().unwrap();
    let mut api = ApiProcess::start(&redis, &[]).await;
    let client = reqwest::Client::new();
    let base = api.base.clone();
    let read = |key: &'static str| {
        client
            .get(format!("{base}/v1/experiments"))
            .header("x-api-key", key)
            .send()
    };
    assert_eq!(read(API_KEY).await.unwrap().status(), 200);
    const NEW: &str = "rotated-key-456";
    assert_eq!(read(NEW).await.unwrap().status(), 403);

    // An empty file (a Secret mid-rewrite) keeps the key in use.
    std::fs::write(api.key_file(), "\n").unwrap();
    std::fs::write(api.key_file(), format!("{NEW}\n")).unwrap();
    poll(
        "the new key in use",
        std::time::Duration::from_secs(20),
        || async {
            let status = read(NEW).await.map_err(|e| e.to_string())?.status();
            if status == 200 {
                Ok(())
            } else {
                Err(status.to_string())
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(read(API_KEY).await.unwrap().status(), 403, "the old key");
    assert!(
        api.child.try_wait().unwrap().is_none(),
        "the same process, not restarted"
    );
}

/// `--worker-threads 1` (the benchmark's setting, a pod with a CPU limit of 1): 300 concurrent
/// `track` calls, a third of them repeats, are answered and each user counted once;
/// 0 threads is refused naming the flag, before anything starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_worker_thread_serves_concurrent_tracks_and_zero_is_refused_naming_the_flag() {
    let redis = RedisServer::start_default().unwrap();
    let api = ApiProcess::start(&redis, &["--worker-threads", "1"]).await;
    let client = reqwest::Client::new();
    // 100 users participate twice each, then each converts once.
    let calls = (0..300).map(|i| {
        let (client, base) = (client.clone(), api.base.clone());
        let user = i % 100;
        async move {
            let response = client
                .get(format!("{base}/track"))
                .query(&[
                    ("experiment", "threads"),
                    ("variant", ["a", "b"][user % 2]),
                    ("event", if i < 200 { "participate" } else { "buy" }),
                    ("uuid", &format!("u-{user}")),
                ])
                .send()
                .await
                .unwrap();
            response.status()
        }
    });
    let statuses = futures::future::join_all(calls).await;
    assert!(
        statuses.iter().all(|s| *s == 200),
        "every track answered 200: {statuses:?}"
    );
    let results = abstore_tests::api::read_json(
        &client,
        &format!("{}/experiment?experiment=threads", api.base),
        abstore_tests::api::API_KEY,
    )
    .await;
    let variants = results[0]["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results in {results}"));
    let sum = |field: &str| -> u64 { variants.iter().map(|r| r[field].as_u64().unwrap()).sum() };
    assert_eq!(
        (sum("trials"), sum("successes")),
        (100, 100),
        "100 users counted once each: {results}"
    );

    let refused = std::process::Command::new(abstore_tests::k8s::api_binary())
        .args(["--redis-url", &redis.url(), "--worker-threads", "0"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && stderr.contains("--worker-threads"),
        "exit {:?}: {stderr}",
        refused.status
    );
}
