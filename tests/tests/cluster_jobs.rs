//! `abstore-jobs` on a cluster-mode store (issue 20), the CLI as a process against a real
//! 3-shard cluster that `local up`'s cluster supervisor formed: backup SCANs every shard (from
//! the primaries, and with `--from-replica` from one replica per shard) into one manifest; a
//! restore routed by slot gives back exactly the keyspace (every type, expiries); a
//! Sentinel-mode (single server) backup restores into the cluster and the cluster's backup into
//! a single server; prune deletes the expired day-keyed counters of every shard and nothing
//! else, after a dry run that deletes nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use abstore::connection::{Connection, Retry};
use abstore_operator::credentials::Role;
use abstore_operator::local::{self, ClusterSupervisor, Layout, LocalState};
use abstore_tests::RedisServer;
use abstore_tests::keyspace::{Keyspace, assert_same_keyspace, snapshot};
use abstore_tests::local_store::KillOnDrop;
use serde_json::Value;

const DAY: i64 = 86_400;

fn cli(args: &[&str], log: &Path) -> (i32, Vec<Value>, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_abstore-jobs-cli"))
        .args(args)
        .env("ABSTORE_TERMINATION_LOG", log)
        .env_remove("ABSTORE_REDIS_URL")
        .output()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    let lines = stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    (
        output.status.code().unwrap(),
        lines,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Runs the CLI and returns its summary line, failing with its stderr.
fn run(args: &[&str], log: &Path) -> Value {
    let (code, lines, stderr) = cli(args, log);
    assert_eq!(code, 0, "abstore-jobs {args:?} failed:\n{stderr}");
    lines.last().cloned().unwrap()
}

/// A connection as the operator to each shard's primary.
async fn primaries(layout: &Layout, state: &LocalState) -> Vec<redis::aio::MultiplexedConnection> {
    let conn = Connection::open(&local::role_url(layout, state, Role::Operator))
        .await
        .unwrap();
    let password = std::fs::read_to_string(layout.credential_file("operator")).unwrap();
    let mut nodes = Vec::new();
    for shard in conn.cluster_shards().await.unwrap() {
        let url = format!("redis://operator:{}@{}", password.trim(), shard.primary);
        nodes.push(
            redis::Client::open(url)
                .unwrap()
                .get_multiplexed_async_connection()
                .await
                .unwrap(),
        );
    }
    nodes
}

/// Every key of the cluster: the union of each primary's keys.
async fn cluster_snapshot(layout: &Layout, state: &LocalState) -> Keyspace {
    let mut all = Keyspace::new();
    for mut node in primaries(layout, state).await {
        let keys = snapshot(&mut node).await;
        assert!(!keys.is_empty(), "a shard holds no key");
        all.extend(keys);
    }
    all
}

async fn flush_cluster(layout: &Layout, state: &LocalState) {
    for mut node in primaries(layout, state).await {
        let () = redis::cmd("FLUSHALL")
            .arg("SYNC")
            .query_async(&mut node)
            .await
            .unwrap();
    }
}

/// Keys of every type, in both key layouts and foreign ones, written through the cluster
/// connection one key per pipeline (each in its own slot).
fn fill_commands(now: i64) -> Vec<redis::Cmd> {
    let hour = (now / 3600) * 3600;
    let mut cmds = Vec::new();
    for i in 0..300 {
        let bucket = hour - (i % 48) * 3600;
        let p = i % 16;
        cmds.push(
            redis::cmd("INCRBY")
                .arg(format!("ec:{bucket}:{{flag{}:{p}}}:v", i % 7))
                .arg(i + 1)
                .to_owned(),
        );
        cmds.push(
            redis::cmd("PFADD")
                .arg(format!("uc:{bucket}:{{flag{}:{p}}}:v", i % 7))
                .arg(format!("user-{i}"))
                .to_owned(),
        );
        cmds.push(
            redis::cmd("SET")
                .arg(format!("ec:{bucket}:plain{i}:v"))
                .arg(i)
                .arg("EXAT")
                .arg(bucket + 45 * DAY)
                .to_owned(),
        );
        cmds.push(
            redis::cmd("SET")
                .arg(format!("dd:{{flag{}:{p}}}:{i:040x}", i % 7))
                .arg(1)
                .arg("EX")
                .arg(3600)
                .to_owned(),
        );
    }
    for i in 0..40 {
        cmds.push(
            redis::cmd("HSET")
                .arg(format!("exp:flag{i}"))
                .arg("name")
                .arg(format!("n{i}"))
                .arg("owner")
                .arg("team")
                .to_owned(),
        );
        cmds.push(
            redis::cmd("SADD")
                .arg(format!("set:{i}"))
                .arg("a")
                .arg("b")
                .arg(i)
                .to_owned(),
        );
        cmds.push(
            redis::cmd("ZADD")
                .arg(format!("z:{i}"))
                .arg(1)
                .arg("x")
                .arg(2.5)
                .arg("y")
                .to_owned(),
        );
        cmds.push(
            redis::cmd("RPUSH")
                .arg(format!("list:{i}"))
                .arg("1")
                .arg("2")
                .arg("3")
                .to_owned(),
        );
    }
    cmds.push(
        redis::cmd("SET")
            .arg(b"bin\xff\x00key".as_slice())
            .arg(b"\x00\x01".as_slice())
            .to_owned(),
    );
    cmds
}

async fn fill_cluster(conn: &Connection, now: i64) {
    let writes = fill_commands(now).into_iter().map(|cmd| async move {
        let mut pipe = redis::pipe();
        pipe.add_command(cmd);
        let _: redis::Value = conn.exec(&pipe, Retry::Idempotent, "fill").await.unwrap();
    });
    futures::future::join_all(writes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backup_restore_and_prune_cover_every_shard_of_a_cluster() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("store");
    let _cleanup = KillOnDrop(dir.clone());
    let example = abstore_tests::repo_root().join("docs/examples/cluster.yaml");
    let mut supervisor = ClusterSupervisor::up(&example, &dir).await.unwrap();
    supervisor.set_jobs_binary(Path::new(env!("CARGO_BIN_EXE_abstore-jobs-cli")));
    let layout = supervisor.layout().clone();
    let state = supervisor.state().clone();
    let url = |role: Role| local::role_url(&layout, &state, role);
    let log = work.path().join("termination-log");
    let now = chrono::Utc::now().timestamp();

    let app = Connection::open(&url(Role::Operator)).await.unwrap();
    fill_cluster(&app, now).await;
    let before = cluster_snapshot(&layout, &state).await;
    assert!(before.len() > 1000, "{}", before.len());

    // The scheduled backup `local up` runs (here started at once) covers every shard.
    assert!(supervisor.run_job_now("backup"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let job_run = loop {
        supervisor.heal_pass().await.unwrap();
        if let Some(run) = supervisor.state().jobs.get("backup") {
            break run.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the backup job did not finish"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert!(job_run.ok, "{job_run:?}");
    let job: Value = serde_json::from_str(job_run.summary.as_deref().unwrap()).unwrap();
    assert_eq!(job["keys"], before.len(), "{job}");
    assert!(
        job["backup"]
            .as_str()
            .unwrap()
            .starts_with(&format!("file://{}", layout.backups_dir().display()))
    );

    // Backup of every shard, from the primaries, then from one replica per shard (once the
    // replicas have everything: WAIT on each primary through the cluster connection).
    let backups = work.path().join("backups");
    let to = format!("file://{}", backups.display());
    let summary = run(
        &["backup", "--redis", &url(Role::Backup), "--to", &to],
        &log,
    );
    assert_eq!(summary["keys"], before.len(), "{summary}");
    let servers = summary["source"]["server"].as_str().unwrap();
    assert_eq!(servers.split(',').count(), 3, "every shard read: {summary}");
    let from_primaries = summary["backup"].as_str().unwrap().to_owned();
    // Replicas catch up within moments (WAIT for them on every primary), and CLUSTER SLOTS
    // lists a replica once it has gossiped a replication offset.
    let mut pipe = redis::pipe();
    pipe.cmd("WAIT").arg(1).arg(5000);
    app.exec_on_every_primary(&pipe, "WAIT").await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !app
        .cluster_shards()
        .await
        .unwrap()
        .iter()
        .all(|shard| !shard.replicas.is_empty())
    {
        assert!(
            std::time::Instant::now() < deadline,
            "replicas never listed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let summary = run(
        &[
            "backup",
            "--redis",
            &url(Role::Backup),
            "--to",
            &to,
            "--from-replica",
        ],
        &log,
    );
    assert_eq!(summary["keys"], before.len(), "{summary}");
    assert_eq!(summary["source"]["from_replica"], true, "{summary}");

    // Restore into the emptied cluster: exactly the keyspace, routed by slot.
    flush_cluster(&layout, &state).await;
    let (code, _, stderr) = cli(
        &[
            "restore",
            "--from",
            &from_primaries,
            "--redis",
            &url(Role::Operator),
            "--mode",
            "missing",
            "--dry-run",
        ],
        &log,
    );
    assert_eq!(code, 0, "{stderr}");
    let summary = run(
        &[
            "restore",
            "--from",
            &from_primaries,
            "--redis",
            &url(Role::Operator),
            "--mode",
            "overwrite",
        ],
        &log,
    );
    assert_eq!(summary["written"], before.len(), "{summary}");
    assert_same_keyspace(&before, &cluster_snapshot(&layout, &state).await);
    // Merge on top doubles the counters, restores nothing else.
    let summary = run(
        &[
            "restore",
            "--from",
            &from_primaries,
            "--redis",
            &url(Role::Operator),
            "--mode",
            "merge",
        ],
        &log,
    );
    assert!(summary["merged"].as_u64().unwrap() > 0, "{summary}");
    let merged = cluster_snapshot(&layout, &state).await;
    let counter = before
        .keys()
        .find(|k| k.starts_with(b"ec:") && k.contains(&b'{'))
        .unwrap();
    let value = |ks: &Keyspace| -> i64 {
        String::from_utf8_lossy(&ks[counter].value[0])
            .parse()
            .unwrap()
    };
    assert_eq!(value(&merged), 2 * value(&before));

    // The cluster's backup into a single server (Sentinel mode), and that server's backup
    // into the emptied cluster: the same keyspace both ways.
    let single = RedisServer::start_default().unwrap();
    let summary = run(
        &[
            "restore",
            "--from",
            &from_primaries,
            "--redis",
            &format!("redis://{}", single.addr()),
            "--mode",
            "overwrite",
        ],
        &log,
    );
    assert_eq!(summary["written"], before.len(), "{summary}");
    let mut single_conn = single.connection().await.unwrap();
    assert_same_keyspace(&before, &snapshot(&mut single_conn).await);
    let single_backups = work.path().join("single-backups");
    let summary = run(
        &[
            "backup",
            "--redis",
            &format!("redis://{}", single.addr()),
            "--to",
            &format!("file://{}", single_backups.display()),
        ],
        &log,
    );
    let from_single = summary["backup"].as_str().unwrap().to_owned();
    flush_cluster(&layout, &state).await;
    run(
        &[
            "restore",
            "--from",
            &from_single,
            "--redis",
            &url(Role::Operator),
            "--mode",
            "overwrite",
        ],
        &log,
    );
    assert_same_keyspace(&before, &cluster_snapshot(&layout, &state).await);

    // Prune: counters of buckets older than 31 days, on every shard, without expiry.
    let old = (now / DAY) * DAY - 40 * DAY;
    let mut expired = Vec::new();
    for i in 0..60 {
        expired.push(format!("ec:{old}:{{flag{}:{}}}:v", i % 7, i % 16));
        expired.push(format!("gc:{old}:old{i}:goal:v"));
    }
    let writes = expired.iter().map(|key| {
        let app = app.clone();
        async move {
            let mut pipe = redis::pipe();
            pipe.cmd("SET").arg(key).arg(5);
            let _: redis::Value = app.exec(&pipe, Retry::Idempotent, "old").await.unwrap();
        }
    });
    futures::future::join_all(writes).await;
    let with_old = cluster_snapshot(&layout, &state).await;
    let summary = run(&["prune", "--redis", &url(Role::Prune), "--dry-run"], &log);
    assert_eq!(summary["expired"], expired.len(), "{summary}");
    assert_eq!(summary["deleted"], 0, "{summary}");
    assert_same_keyspace(&with_old, &cluster_snapshot(&layout, &state).await);
    let summary = run(&["prune", "--redis", &url(Role::Prune)], &log);
    assert_eq!(summary["deleted"], expired.len(), "{summary}");
    assert_eq!(
        summary["server"].as_str().unwrap().split(',').count(),
        3,
        "every shard pruned: {summary}"
    );
    assert_same_keyspace(&before, &cluster_snapshot(&layout, &state).await);

    supervisor.stop().await.unwrap();
}
