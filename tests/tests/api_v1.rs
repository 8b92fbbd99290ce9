//! The tracking API's `/v1` results against the `abstore-api` binary: participations per
//! variant (events and unique users, in total and per day), each goal's conversion with its 95 %
//! Wilson interval and the z-test against the control — the statistics checked against Python's
//! own computation (`statistics.NormalDist`) from the numbers the API reports, the numbers
//! against what was sent (unique counts within HyperLogLog's error).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use abstore_tests::RedisServer;
use abstore_tests::api::{API_KEY, ApiProcess, HourTally, PARTICIPATE, read_json};
use serde_json::Value;

/// Unique users may differ by HyperLogLog's error (0.81 %; three standard errors allowed).
fn within_hll_error(estimate: u64, actual: u64) -> bool {
    estimate.abs_diff(actual) as f64 <= (actual as f64 * 0.0243).max(2.0)
}

/// The hours and the days add up to the totals: events exactly, unique users (each user
/// appears once per variant here) within HyperLogLog's error; the hours are consecutive and
/// cover the days.
fn assert_adds_up(results: &Value) {
    let hours = results["hours"].as_array().unwrap();
    let days = results["days"].as_array().unwrap();
    assert_eq!(hours.len(), days.len() * 24, "whole days of hours");
    for (i, hour) in hours.iter().enumerate() {
        assert_eq!(
            hour["start"].as_i64().unwrap(),
            days[0]["start"].as_i64().unwrap() + 3600 * i as i64
        );
    }
    let sum = |periods: &[Value], pick: &dyn Fn(&Value) -> &Value| -> u64 {
        periods.iter().map(|p| pick(p).as_u64().unwrap()).sum()
    };
    for (variant, total) in results["variants"].as_object().unwrap() {
        for periods in [hours, days] {
            let events = sum(periods, &|p| &p["variants"][variant]["events"]);
            assert_eq!(
                events,
                total["events"].as_u64().unwrap(),
                "{variant} events"
            );
            let users = sum(periods, &|p| &p["variants"][variant]["users"]);
            let total_users = total["users"].as_u64().unwrap();
            assert!(
                within_hll_error(users, total_users),
                "{variant}: {users} users over the periods, {total_users} in total"
            );
        }
    }
    for (goal, per_variant) in results["goals"].as_object().unwrap() {
        for (variant, stats) in per_variant.as_object().unwrap() {
            for periods in [hours, days] {
                let events = sum(periods, &|p| &p["goals"][goal][variant]["events"]);
                assert_eq!(
                    events,
                    stats["events"].as_u64().unwrap(),
                    "{goal}/{variant}"
                );
                let conversions = sum(periods, &|p| &p["goals"][goal][variant]["conversions"]);
                let total = stats["conversions"].as_u64().unwrap();
                assert!(
                    within_hll_error(conversions, total),
                    "{goal}/{variant}: {conversions} over the periods, {total} in total"
                );
            }
        }
    }
}

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
    let mut tally = HourTally::default();
    for (variant, buyers) in [("control", 80), ("treatment", 120)] {
        for user in 0..800 {
            let uuid = format!("{variant}-{user}");
            let mut events = vec![PARTICIPATE];
            if user < buyers {
                events.push("buy");
            }
            for event in events {
                api.track(
                    &client,
                    &mut tally,
                    ("alephbet", "checkout"),
                    (variant, event, &uuid),
                )
                .await;
            }
        }
    }
    let results = read_json(
        &client,
        &format!("{}/v1/experiments/checkout", api.base),
        API_KEY,
    )
    .await;
    assert_eq!(results["control"], "control", "{results}");
    for variant in ["control", "treatment"] {
        let p = &results["variants"][variant];
        assert_eq!(p["events"], 800, "{results}");
        let users = p["users"].as_u64().unwrap();
        assert!(users.abs_diff(800) <= 24, "{variant} users {users}");
    }
    assert_eq!(results["days"].as_array().unwrap().len(), 1, "{results}");
    // Every event in the hour it was sent in; the hours of the whole day, adding up.
    tally.assert_hours(&results);
    assert_eq!(results["hours"].as_array().unwrap().len(), 24, "{results}");
    assert_adds_up(&results);
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

    // The namespace's experiments.
    let list = read_json(&client, &format!("{}/v1/experiments", api.base), API_KEY).await;
    assert_eq!(
        list,
        serde_json::json!({"namespace": "alephbet", "experiments": ["checkout"]})
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

/// Events in hours other than the current one: written through the `abstore` recorder (what the
/// API's `track` calls, with the API's namespace as the key prefix) with chosen timestamps, 5
/// and 30 hours ago (so on another UTC day too), beside events tracked over HTTP now. Each
/// shows in its own hour, the hours add up to the days and the totals, and a range that starts
/// later leaves the older day out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hourly_series_hold_each_event_in_its_hour_and_add_up() {
    use abstore::counters::{Event, Recorder, RecorderConfig};
    let redis = RedisServer::start_default().unwrap();
    let api = ApiProcess::start(&redis, &["--rate-limit", "1000000"]).await;
    let client = reqwest::Client::new();
    let mut tally = HourTally::default();
    for (variant, users) in [("a", 7), ("b", 5)] {
        for user in 0..users {
            let uuid = format!("now-{variant}-{user}");
            api.track(
                &client,
                &mut tally,
                ("shop", "banner"),
                (variant, PARTICIPATE, &uuid),
            )
            .await;
            if user % 2 == 0 {
                api.track(
                    &client,
                    &mut tally,
                    ("shop", "banner"),
                    (variant, "click", &uuid),
                )
                .await;
            }
        }
    }
    let conn =
        abstore::connection::Connection::open(&format!("redis://127.0.0.1:{}", redis.port()))
            .await
            .unwrap();
    let recorder = Recorder::new(
        conn,
        RecorderConfig {
            env: Some(abstore::keys::Env::new("shop").unwrap()),
            ..RecorderConfig::default()
        },
    )
    .unwrap();
    let now = chrono::Utc::now().timestamp();
    for (ago_hours, variant, users, clicks) in [(5, "a", 11, 3), (30, "b", 4, 4), (30, "a", 2, 0)] {
        let at = now - ago_hours * 3600;
        for user in 0..users {
            let uuid = format!("past-{ago_hours}-{variant}-{user}");
            recorder
                .record(
                    &Event::evaluation("banner", variant, &uuid, at)
                        .with_event_id(format!("{uuid}-p")),
                )
                .await
                .unwrap();
            if user < clicks {
                recorder
                    .record(
                        &Event::goal("banner", "click", variant, &uuid, at)
                            .with_event_id(format!("{uuid}-c")),
                    )
                    .await
                    .unwrap();
            }
        }
        tally.add_known(PARTICIPATE, variant, at, users);
        tally.add_known("click", variant, at, clicks);
    }
    let read = |from: i64| {
        let client = client.clone();
        let base = api.base.clone();
        async move {
            let response = client
                .get(format!("{base}/v1/experiments/banner"))
                .query(&[("namespace", "shop"), ("from", &from.to_string())])
                .header("x-api-key", API_KEY)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            response.json::<Value>().await.unwrap()
        }
    };
    let results = read(now - 31 * 3600).await;
    tally.assert_hours(&results);
    assert_adds_up(&results);
    for (variant, events) in [("a", 7 + 11 + 2), ("b", 5 + 4)] {
        assert_eq!(results["variants"][variant]["events"], events, "{results}");
        assert_eq!(tally.total(PARTICIPATE, variant), events);
    }
    // The hour 5 hours ago holds exactly what was written into it.
    let five_ago = (now - 5 * 3600) - (now - 5 * 3600).rem_euclid(3600);
    let hour = results["hours"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["start"] == five_ago)
        .unwrap();
    assert_eq!(hour["variants"]["a"]["events"], 11, "{hour}");
    assert_eq!(hour["variants"]["a"]["users"], 11, "{hour}");
    assert_eq!(hour["goals"]["click"]["a"]["conversions"], 3, "{hour}");
    assert_eq!(hour["variants"]["b"]["events"], 0, "{hour}");

    // From the day of the 5-hours-ago events on: the older day's hours are not read.
    let later = read(now - 5 * 3600).await;
    assert_adds_up(&later);
    let first = later["hours"][0]["start"].as_i64().unwrap();
    assert_eq!(
        first,
        (now - 5 * 3600) - (now - 5 * 3600).rem_euclid(86_400)
    );
    // 30 hours ago is always before the day that holds 5 hours ago.
    assert_eq!(later["variants"]["b"]["events"], 5, "{later}");
}
