//! The tracking API's `/v1` results against the `abstore-api` binary: participations per
//! variant (events and unique users, in total and per day), each goal's conversion with its 95 %
//! Wilson interval and the z-test against the control — the statistics checked against Python's
//! own computation (`statistics.NormalDist`) from the numbers the API reports, the numbers
//! against what was sent (unique counts within HyperLogLog's error).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use abstore_tests::RedisServer;
use abstore_tests::api::{API_KEY, ApiProcess};
use serde_json::Value;

fn python(expression: &str) -> f64 {
    let output = Command::new("python3")
        .args([
            "-c",
            &format!("from statistics import NormalDist; import math; print(repr({expression}))"),
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_results_report_conversion_intervals_and_significance() {
    let redis = RedisServer::start_default().unwrap();
    let api = ApiProcess::start(&redis, &["--rate-limit", "1000000"]).await;
    let client = reqwest::Client::new();
    // control: 800 users, 80 buy; treatment: 800 users, 120 buy (each user once).
    for (variant, buyers) in [("control", 80), ("treatment", 120)] {
        for user in 0..800 {
            let uuid = format!("{variant}-{user}");
            let mut events = vec!["participate"];
            if user < buyers {
                events.push("buy");
            }
            for event in events {
                let response = client
                    .get(format!("{}/track", api.base))
                    .query(&[
                        ("experiment", "checkout"),
                        ("variant", variant),
                        ("event", event),
                        ("uuid", &uuid),
                    ])
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 200);
            }
        }
    }
    let results: Value = client
        .get(format!("{}/v1/experiments/checkout", api.base))
        .header("x-api-key", API_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(results["control"], "control", "{results}");
    for variant in ["control", "treatment"] {
        let p = &results["variants"][variant];
        assert_eq!(p["events"], 800, "{results}");
        let users = p["users"].as_u64().unwrap();
        assert!(users.abs_diff(800) <= 24, "{variant} users {users}");
    }
    assert_eq!(results["days"].as_array().unwrap().len(), 1, "{results}");
    let buy = &results["goals"]["buy"];
    for (variant, buyers) in [("control", 80u64), ("treatment", 120)] {
        let g = &buy[variant];
        assert_eq!(g["events"].as_u64().unwrap(), buyers);
        let conversions = g["conversions"].as_u64().unwrap();
        assert!(
            conversions.abs_diff(buyers) <= 4,
            "{variant}: {conversions}"
        );
        let (s, n) = (conversions, g["participants"].as_u64().unwrap());
        // Wilson from its definition, in Python.
        for (side, bound) in [(-1.0, 0), (1.0, 1)] {
            let reference = python(&format!(
                "(lambda p, n, z: ((p + z*z/(2*n)) + {side} * z * math.sqrt(p*(1-p)/n + z*z/(4*n*n))) / (1 + z*z/n))({s}/{n}, {n}, NormalDist().inv_cdf(0.975))"
            ));
            let ours = g["interval"][bound].as_f64().unwrap();
            assert!(
                (ours - reference).abs() < 1e-9,
                "{variant} interval: {ours} against {reference}"
            );
        }
    }
    assert!(
        buy["control"]["p_value"].is_null(),
        "no test of the control against itself"
    );
    let (s1, n1) = (
        buy["treatment"]["conversions"].as_u64().unwrap(),
        buy["treatment"]["participants"].as_u64().unwrap(),
    );
    let (s2, n2) = (
        buy["control"]["conversions"].as_u64().unwrap(),
        buy["control"]["participants"].as_u64().unwrap(),
    );
    let p_reference = python(&format!(
        "(lambda s1, n1, s2, n2: (lambda p: 2 * (1 - NormalDist().cdf(abs((s1/n1 - s2/n2) / math.sqrt(p*(1-p)*(1/n1 + 1/n2))))))((s1 + s2) / (n1 + n2)))({s1}, {n1}, {s2}, {n2})"
    ));
    let p_value = buy["treatment"]["p_value"].as_f64().unwrap();
    assert!(
        (p_value - p_reference).abs() < 1e-12,
        "p {p_value} against {p_reference}"
    );
    assert!(
        p_value < 0.01,
        "15 % against 10 % of 800 is significant: {p_value}"
    );

    // Unknown experiment: 404; a bad range: 400 naming it; no key: 403.
    let get = |path: &str, key: bool| {
        let mut request = client.get(format!("{}{path}", api.base));
        if key {
            request = request.header("x-api-key", API_KEY);
        }
        request.send()
    };
    assert_eq!(
        get("/v1/experiments/nothing", true).await.unwrap().status(),
        404
    );
    let bad = get("/v1/experiments/checkout?from=yesterday", true)
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert_eq!(bad.json::<Value>().await.unwrap()["parameter"], "from");
    assert_eq!(
        get("/v1/experiments/checkout", false)
            .await
            .unwrap()
            .status(),
        403
    );
}
