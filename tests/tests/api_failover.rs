//! Durability of the tracking API across a Sentinel failover: `abstore-api` (the binary) on a
//! Sentinel URL with `--wait-replicas 1`; a client tracks events with unique uuids and, like a
//! well-behaved Alephbet client, sends an event again after a 503 (honouring `Retry-After`).
//! The primary is killed with SIGKILL under that load: every event answered 200 must be counted,
//! none twice, and while no primary is reachable the API answers 503 with `Retry-After`, never
//! 200.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use abstore_tests::api::{API_KEY, ApiProcess, read_json};
use abstore_tests::k8s::poll;
use abstore_tests::{Topology, TopologyOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acknowledged_track_is_lost_when_the_primary_is_killed() {
    let mut topology = Topology::start(TopologyOptions::default()).await.unwrap();
    // The library gives up on a request after 300 ms without a primary, so the API answers 503
    // during the failover (about 2 s here) instead of holding the request.
    let url = format!("{}?failover_timeout_ms=300", topology.sentinel_url());
    let api =
        ApiProcess::start_url(&url, &["--wait-replicas", "1", "--rate-limit", "1000000"]).await;
    let base = api.base.clone();
    let acked = Arc::new(AtomicUsize::new(0));
    let unavailable = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (acked, unavailable, stop) = (acked.clone(), unavailable.clone(), stop.clone());
        tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(40))
                .build()
                .unwrap();
            let mut uuid = 0u64;
            let mut problems = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let response = client
                    .get(format!("{base}/track"))
                    .query(&[
                        ("experiment", "failover"),
                        ("variant", "v"),
                        ("event", "participate"),
                        ("uuid", &format!("user-{uuid}")),
                    ])
                    .send()
                    .await;
                match response {
                    Ok(r) if r.status() == 200 => {
                        acked.fetch_add(1, Ordering::Relaxed);
                        uuid += 1;
                    }
                    Ok(r) if r.status() == 503 => {
                        if r.headers().get("retry-after").is_none() {
                            problems.push("a 503 without Retry-After".to_owned());
                        }
                        unavailable.fetch_add(1, Ordering::Relaxed);
                        // The client's backoff before sending the same event again.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Ok(r) => problems.push(format!("status {}", r.status())),
                    Err(e) => problems.push(e.to_string()),
                }
            }
            problems
        })
    };
    let wait_for = |more: usize| {
        let acked = acked.clone();
        async move {
            let target = acked.load(Ordering::Relaxed) + more;
            poll(
                "more events acknowledged",
                Duration::from_secs(60),
                || async {
                    let now = acked.load(Ordering::Relaxed);
                    if now >= target {
                        Ok(())
                    } else {
                        Err(format!("{now} of {target}"))
                    }
                },
            )
            .await
            .unwrap();
        }
    };
    wait_for(300).await;
    topology.primary_node().await.unwrap().kill9().unwrap();
    wait_for(300).await;
    stop.store(true, Ordering::Relaxed);
    let problems = writer.await.unwrap();
    assert!(problems.is_empty(), "{problems:?}");

    let acked = acked.load(Ordering::Relaxed) as u64;
    let client = reqwest::Client::new();
    let results = read_json(&client, &format!("{}/all", api.base), API_KEY).await;
    println!(
        "acknowledged {acked}, 503 answers {}, results {results}",
        unavailable.load(Ordering::Relaxed)
    );
    // `all` lists goals only; the trials are read through a goal-less experiment, so track one
    // goal to see them.
    let goal = client
        .get(format!("{}/track", api.base))
        .query(&[
            ("experiment", "failover"),
            ("variant", "v"),
            ("event", "done"),
            ("uuid", "user-0"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(goal.status(), 200);
    let experiment = read_json(
        &client,
        &format!("{}/experiment?experiment=failover", api.base),
        API_KEY,
    )
    .await;
    let trials = experiment[0]["results"][0]["trials"].as_u64().unwrap();
    assert!(
        unavailable.load(Ordering::Relaxed) > 0,
        "no 503 while the primary was down"
    );
    assert_eq!(
        trials, acked,
        "every event answered 200 counted once (acknowledged {acked}, counted {trials})"
    );
}
