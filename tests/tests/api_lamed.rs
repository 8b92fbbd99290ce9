//! The tracking API (`abstore-api`, issue 21) against the real Lamed (PyPI `lamed==0.4.3`): one
//! generated event stream — three experiments, two or three variants, goals, duplicate uuids —
//! is replayed into Lamed's own `track` (scripts/lamed_compat.py, against one redis-server) and
//! through HTTP into `abstore-api` run as a process (against another); `experiment` and `all`
//! (also with a scope) must answer the same JSON, order aside; the same stream into the real
//! Gimel (`gimel==1.5.0`, unique uuids) must match `unique=true` within HyperLogLog's error.
//! Also: reads need the API key, and a name that would break the key schema is a 400 naming the
//! parameter.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::Duration;

use abstore_tests::api::{API_KEY, ApiProcess, read_json};
use abstore_tests::k8s::poll;
use abstore_tests::lamed::{gimel_dir, lamed_dir};
use abstore_tests::{LOOPBACK, RedisServer, repo_root};
use serde_json::{Value, json};

/// The stream: 240 users; each participates in every experiment with a variant of its own, some
/// reach goals; every fifth user's events are sent twice (Lamed counts a uuid once per counter).
fn stream() -> Vec<Value> {
    let experiments: [(&str, &[&str], &[&str]); 3] = [
        ("button", &["red", "blue"], &["click", "buy"]),
        ("headline", &["a", "b", "c"], &["read"]),
        ("price", &["low", "high"], &["buy"]),
    ];
    let mut events = Vec::new();
    for user in 0..240u32 {
        let uuid = format!("user-{user}");
        for (e, (experiment, variants, goals)) in experiments.iter().enumerate() {
            let variant = variants[(user as usize * 7 + e) % variants.len()];
            let mut mine = vec![
                json!({"experiment": experiment, "variant": variant, "event": "participate", "uuid": uuid}),
            ];
            for (g, goal) in goals.iter().enumerate() {
                if (user as usize + g * 3 + e).is_multiple_of(4 + g) {
                    mine.push(json!({"experiment": experiment, "variant": variant, "event": goal, "uuid": uuid}));
                }
            }
            let copies = if user % 5 == 0 { 2 } else { 1 };
            for _ in 0..copies {
                events.extend(mine.iter().cloned());
            }
        }
    }
    events
}

/// Goals sorted by name, each goal's results by label; `all`'s experiments by name after meta.
fn normalized(value: &Value) -> Value {
    fn goals(goals: &Value) -> Value {
        let mut goals: Vec<Value> = goals.as_array().cloned().unwrap_or_default();
        for goal in &mut goals {
            if let Some(results) = goal["results"].as_array_mut() {
                results.sort_by_key(|r| r["label"].as_str().unwrap_or_default().to_owned());
            }
        }
        goals.sort_by_key(|g| g["goal"].as_str().unwrap_or_default().to_owned());
        Value::Array(goals)
    }
    match value.as_array() {
        Some(items) if items.first().is_some_and(|f| f.get("meta").is_some()) => {
            let mut rest: Vec<Value> = items[1..]
                .iter()
                .map(|e| json!({"experiment": e["experiment"], "goals": goals(&e["goals"])}))
                .collect();
            rest.sort_by_key(|e| e["experiment"].as_str().unwrap_or_default().to_owned());
            let mut out = vec![items[0].clone()];
            out.extend(rest);
            Value::Array(out)
        }
        _ => goals(value),
    }
}

/// The same JSON, numbers within 3 % (at least 2) of each other.
fn assert_close(ours: &Value, theirs: &Value, what: &str) {
    match (ours, theirs) {
        (Value::Number(a), Value::Number(b)) => {
            let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
            assert!(
                (a - b).abs() <= (b * 0.03).max(2.0),
                "{what}: {a} against {b}"
            );
        }
        (Value::Array(a), Value::Array(b)) => {
            assert_eq!(a.len(), b.len(), "{what}: {ours} against {theirs}");
            for (x, y) in a.iter().zip(b) {
                assert_close(x, y, what);
            }
        }
        (Value::Object(a), Value::Object(b)) => {
            assert_eq!(
                a.keys().collect::<Vec<_>>(),
                b.keys().collect::<Vec<_>>(),
                "{what}"
            );
            for (key, x) in a {
                assert_close(x, &b[key], what);
            }
        }
        _ => assert_eq!(ours, theirs, "{what}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn experiment_and_all_answer_what_lamed_answers_for_the_same_stream() {
    let events = stream();
    let work = tempfile::tempdir().unwrap();
    let events_file = work.path().join("events.json");
    std::fs::write(&events_file, serde_json::to_vec(&events).unwrap()).unwrap();

    // Lamed, its own functions, on its own Redis.
    let lamed_redis = RedisServer::start_default().unwrap();
    let output = Command::new("python3")
        .arg(repo_root().join("scripts/lamed_compat.py"))
        .arg(lamed_dir())
        .arg(LOOPBACK)
        .arg(lamed_redis.port().to_string())
        .arg(&events_file)
        .arg("alephbet")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "lamed_compat.py: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lamed: Value = serde_json::from_slice(&output.stdout).unwrap();

    // abstore-api, over HTTP, on another Redis: GET for even events, a POSTed form for odd ones.
    let redis = RedisServer::start_default().unwrap();
    // One client replays everything: no per-client limit in the way.
    let api = ApiProcess::start(&redis, &["--rate-limit", "1000000"]).await;
    let client = reqwest::Client::new();
    for (i, event) in events.iter().enumerate() {
        let pairs: Vec<(String, String)> = ["experiment", "variant", "event", "uuid"]
            .iter()
            .map(|k| ((*k).to_owned(), event[*k].as_str().unwrap().to_owned()))
            .collect();
        let request = if i % 2 == 0 {
            client.get(format!("{}/track", api.base)).query(&pairs)
        } else {
            let body: String = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(&pairs)
                .finish();
            client
                .post(format!("{}/track", api.base))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
        };
        let response = request.send().await.unwrap();
        assert_eq!(
            response.status(),
            200,
            "{event}: {:?}",
            response.text().await
        );
    }

    let read = |path: String| {
        let client = client.clone();
        async move { read_json(&client, &path, API_KEY).await }
    };
    for (name, expected) in lamed["experiments"].as_object().unwrap() {
        let ours = read(format!("{}/experiment?experiment={name}", api.base)).await;
        assert_eq!(normalized(&ours), normalized(expected), "experiment {name}");
    }
    let ours = read(format!("{}/all", api.base)).await;
    assert_eq!(normalized(&ours), normalized(&lamed["all"]), "all");
    let ours = read(format!("{}/all?scope=button,headline", api.base)).await;
    assert_eq!(
        normalized(&ours),
        normalized(&lamed["all_scoped"]),
        "all with a scope"
    );
    // /metrics: every distinct event counted once, every copy a duplicate, requests by route.
    let distinct: std::collections::BTreeSet<String> =
        events.iter().map(Value::to_string).collect();
    let metrics = client
        .get(format!("{}/metrics", api.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for (line, value) in [
        (
            r#"abstore_api_events_total{outcome="counted"}"#,
            distinct.len(),
        ),
        (
            r#"abstore_api_events_total{outcome="duplicate"}"#,
            events.len() - distinct.len(),
        ),
        (
            r#"abstore_api_requests_total{route="/track",status="200"}"#,
            events.len(),
        ),
    ] {
        assert!(
            metrics.contains(&format!("{line} {value}\n")),
            "{line} {value} not in:\n{metrics}"
        );
    }
    assert!(metrics.contains("abstore_api_request_duration_seconds_bucket{"));

    // Gimel, its own functions on its own Redis: unique uuids (PFADD/PFCOUNT). `unique=true`
    // answers the same within HyperLogLog's error (0.81 % standard error; 3 % allowed).
    let gimel_redis = RedisServer::start_default().unwrap();
    let output = Command::new("python3")
        .arg(repo_root().join("scripts/lamed_compat.py"))
        .arg(gimel_dir())
        .arg(LOOPBACK)
        .arg(gimel_redis.port().to_string())
        .arg(&events_file)
        .arg("alephbet")
        .arg("gimel")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "lamed_compat.py gimel: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let gimel: Value = serde_json::from_slice(&output.stdout).unwrap();
    for (name, expected) in gimel["experiments"].as_object().unwrap() {
        let ours = read(format!(
            "{}/experiment?experiment={name}&unique=true",
            api.base
        ))
        .await;
        assert_close(
            &normalized(&ours),
            &normalized(expected),
            &format!("unique counts of {name}"),
        );
    }
    let ours = read(format!("{}/all?unique=1", api.base)).await;
    assert_close(&normalized(&ours), &normalized(&gimel["all"]), "unique all");

    // Lamed's delete: the experiment's counters and registry go; `all` no longer lists it.
    let deleted = lamed["deleted"].as_str().unwrap();
    let delete = |method: reqwest::Method| {
        client
            .request(method, format!("{}/delete?experiment={deleted}", api.base))
            .header("x-api-key", API_KEY)
    };
    assert_eq!(
        delete(reqwest::Method::DELETE)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let ours = read(format!("{}/all", api.base)).await;
    assert_eq!(
        normalized(&ours),
        normalized(&lamed["all_after_delete"]),
        "all after deleting {deleted}"
    );
    let gone = read(format!("{}/experiment?experiment={deleted}", api.base)).await;
    assert_eq!(gone, json!([]), "{deleted} after its delete");
    assert_eq!(
        delete(reqwest::Method::POST).send().await.unwrap().status(),
        404
    );
    let mut counters = redis::Client::open(format!("redis://{LOOPBACK}:{}", redis.port()))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let left: Vec<String> = redis::cmd("KEYS")
        .arg(format!("alephbet:*:{deleted}:*"))
        .query_async(&mut counters)
        .await
        .unwrap();
    assert!(left.is_empty(), "counters of {deleted} left: {left:?}");
    // Tracked again, it starts from nothing.
    let again = client
        .get(format!("{}/track", api.base))
        .query(&[
            ("experiment", deleted),
            ("variant", "low"),
            ("event", "participate"),
            ("uuid", "user-1"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 200);
    let all = read(format!("{}/all", api.base)).await;
    assert!(
        all.as_array()
            .unwrap()
            .iter()
            .any(|e| e["experiment"] == deleted),
        "{all}"
    );

    // The counts are not trivially equal: duplicates were sent and goals are sparse.
    let trials: u64 = lamed["experiments"]["button"][0]["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["trials"].as_u64().unwrap())
        .sum();
    assert_eq!(trials, 240, "one trial per user despite the duplicates");

    // Reads need the key; a name that breaks the key schema is refused naming the parameter.
    let anonymous = client
        .get(format!("{}/all", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 403);
    let bad = client
        .get(format!("{}/track", api.base))
        .query(&[
            ("experiment", "a:b"),
            ("variant", "v"),
            ("event", "participate"),
            ("uuid", "u"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let body: Value = bad.json().await.unwrap();
    assert_eq!(body["parameter"], "experiment", "{body}");

    // SIGTERM, as Kubernetes stops a pod: it drains and exits 0.
    let mut api = api;
    let pid = api.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = poll("abstore-api to exit", Duration::from_secs(10), || {
        let exited = api.child.try_wait().map_err(|e| e.to_string());
        async move { exited?.ok_or_else(|| "still running".to_owned()) }
    })
    .await
    .unwrap();
    assert!(status.success(), "exit status after SIGTERM: {status}");
}
