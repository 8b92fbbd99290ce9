//! The tracking API under `local up`, as a user runs it (issue 21): the `abstore-operator`
//! binary on the README's own file (charts/abstore-operator/examples/local.yaml, `api.enabled`)
//! starts `abstore-api` on a loopback port with a generated key, prints its URL and shows it in
//! `local status`; events tracked over HTTP are read back through the key; the API killed with
//! SIGKILL is started again on the same port; Ctrl-C stops it with the store.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use abstore_tests::k8s::{api_binary, operator_binary};
use abstore_tests::local_store::LocalUp;
use serde_json::{Value, json};

/// Polls `local status` until a primary is elected and the API answers `/readyz`.
async fn wait_for_api(up: &mut LocalUp, client: &reqwest::Client, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = up.child.try_wait().unwrap() {
            panic!("local up exited ({status}):\n{}", up.log());
        }
        if up.dir.join("state.json").exists() {
            let status = up.status();
            if let Some(url) = status["api"].as_str()
                && status["primary"].is_string()
                && client
                    .get(format!("{url}/readyz"))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
            {
                return url.to_owned();
            }
        }
        assert!(
            Instant::now() < deadline,
            "no API after {within:?}:\n{}",
            up.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn api_pid(dir: &Path) -> u32 {
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("state.json")).unwrap()).unwrap();
    u32::try_from(
        state["api"]["pid"]
            .as_u64()
            .expect("no API pid in state.json"),
    )
    .unwrap()
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_up_runs_the_tracking_api_from_the_readme_file_and_keeps_it_running() {
    // Built next to the operator: `local up` finds it there, as after `cargo build`.
    let api = api_binary();
    assert_eq!(api.parent(), operator_binary().parent());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let spec = abstore_tests::repo_root().join("charts/abstore-operator/examples/local.yaml");
    let mut up = LocalUp::start(&spec, &dir);
    let client = reqwest::Client::new();
    let url = wait_for_api(&mut up, &client, Duration::from_secs(120)).await;
    let key = std::fs::read_to_string(dir.join("api-key")).unwrap();
    let key = key.trim();
    assert!(key.len() >= 20, "a generated key, not {key:?}");
    // The printed line names the URL, the key file and the results page.
    let printed = up.log();
    assert!(
        printed.contains(&format!("api:         {url}")) && printed.contains("/dashboard"),
        "{printed}"
    );

    // Three users, two variants, one conversion, one duplicate.
    for (variant, event, uuid) in [
        ("red", "participate", "u1"),
        ("red", "participate", "u1"),
        ("blue", "participate", "u2"),
        ("red", "participate", "u3"),
        ("red", "signup", "u1"),
    ] {
        let response = client
            .get(format!("{url}/track"))
            .query(&[
                ("experiment", "button"),
                ("variant", variant),
                ("event", event),
                ("uuid", uuid),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{variant}/{event}/{uuid}");
    }
    let read = |key: &str| {
        client
            .get(format!("{url}/experiment"))
            .query(&[("experiment", "button")])
            .header("x-api-key", key)
            .send()
    };
    assert_eq!(read("wrong-key").await.unwrap().status(), 403);
    let results: Value = read(key).await.unwrap().json().await.unwrap();
    let mut goals = results.as_array().unwrap().clone();
    goals.sort_by_key(|g| g["goal"].as_str().unwrap().to_owned());
    let signup = goals.iter().find(|g| g["goal"] == "signup").unwrap();
    let mut rows = signup["results"].as_array().unwrap().clone();
    rows.sort_by_key(|r| r["label"].as_str().unwrap().to_owned());
    assert_eq!(
        rows,
        [
            json!({"label": "blue", "successes": 0, "trials": 1}),
            json!({"label": "red", "successes": 1, "trials": 2}),
        ],
        "{results:#}"
    );

    // Killed, it is started again on the same port by the next heal passes.
    let first = api_pid(&dir);
    assert!(
        std::process::Command::new("kill")
            .args(["-KILL", &first.to_string()])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answered = client
            .get(format!("{url}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if answered && api_pid(&dir) != first {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the API was not restarted:\n{}",
            up.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Its data is Redis's: the same answer from the new process.
    let again: Value = read(key).await.unwrap().json().await.unwrap();
    let mut again_goals = again.as_array().unwrap().clone();
    again_goals.sort_by_key(|g| g["goal"].as_str().unwrap().to_owned());
    assert_eq!(again_goals, goals);

    // Ctrl-C: the API stops with the store.
    let second = api_pid(&dir);
    let exit = up.interrupt(Duration::from_secs(60));
    assert!(exit.success(), "{exit}\n{}", up.log());
    assert!(
        !alive(second),
        "abstore-api {second} still runs after local up stopped"
    );
}
