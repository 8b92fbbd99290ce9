//! `abstore-operator local up | status | down` with real redis-server and redis-sentinel
//! processes: the store comes up healed (bootstrap through the heal code), survives a kill -9 of
//! its primary (Sentinel fails over, the old primary rejoins as a replica, the data stays),
//! restarts from its directory with the same ports, passwords and data, and `down` stops what a
//! vanished `up` left running.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use abstore_operator::heal::Decision;
use abstore_operator::local::{self, Layout, Supervisor};
use abstore_tests::local_store::KillOnDrop;
use tokio::time::Instant;

const STORE: &str = "\
apiVersion: abstore.dev/v1alpha1
kind: ABStore
metadata:
  name: local-test
spec:
  sentinel:
    downAfterMilliseconds: 1000
    failoverTimeoutMilliseconds: 3000
";
const KEY: &str = "ec:1700000000:flag:control";
const CONVERGE: Duration = Duration::from_secs(40);

fn write_store(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("store.yaml");
    std::fs::write(&path, STORE).unwrap();
    path
}

/// A connection to the primary as the `app` user, with the password from its file.
async fn app_conn(layout: &Layout, primary: &str) -> redis::aio::MultiplexedConnection {
    let password = std::fs::read_to_string(layout.credential_file("app")).unwrap();
    let url = format!("redis://app:{}@{primary}", password.trim());
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

fn running(pid: Option<u32>) -> bool {
    pid.is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists() && !is_zombie(pid))
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(true)
}

#[tokio::test]
async fn local_up_heals_a_primary_kill_and_restarts_with_its_data() {
    let work = tempfile::tempdir().unwrap();
    let spec = write_store(work.path());
    let dir = work.path().join("store");
    let _cleanup = KillOnDrop(dir.clone());
    let mut supervisor = Supervisor::up(&spec, &dir).await.unwrap();
    let layout = supervisor.layout().clone();
    let state = supervisor.state().clone();
    assert_eq!((state.nodes.len(), state.sentinels.len()), (3, 3));
    let primary = state.primary.clone().expect("a primary after up");

    // The app user writes a counter; the password file is private.
    let mut app = app_conn(&layout, &primary).await;
    let value: i64 = redis::cmd("INCRBY")
        .arg(KEY)
        .arg(7)
        .query_async(&mut app)
        .await
        .unwrap();
    assert_eq!(value, 7);
    let mode = std::fs::metadata(layout.credential_file("app")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o077,
        0
    );

    let status = local::status(&layout).await.unwrap();
    assert_eq!(status.primary.as_deref(), Some(primary.as_str()));
    assert!(
        status.url.starts_with("redis+sentinel://app@127.0.0.1:"),
        "{}",
        status.url
    );
    assert!(
        status.nodes.iter().all(|n| n.running && n.error.is_none()),
        "{status:?}"
    );
    assert!(
        status
            .sentinels
            .iter()
            .all(|s| s.primary.as_deref() == Some(primary.as_str())),
        "{status:?}"
    );
    // Before the primary dies: the counter reached the replicas, and every sentinel knows the
    // replicas and the other sentinels (hello messages every 2 s), or there is no quorum.
    let deadline = Instant::now() + CONVERGE;
    loop {
        let report = supervisor.heal_pass().await.unwrap();
        let offsets: Vec<u64> = report
            .observation
            .nodes
            .iter()
            .filter_map(|n| n.state.as_ref().ok().map(|i| i.offset))
            .collect();
        let synced = offsets.len() == 3 && offsets.iter().all(|o| *o == offsets[0]);
        let discovered = report.observation.sentinels.iter().all(
            |s| matches!(&s.state, Ok(Some(v)) if v.replicas.len() == 2 && v.sentinels.len() == 2),
        );
        if synced && discovered {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not ready for a failover: {report:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // kill -9 the primary: Sentinel promotes a replica, the old primary comes back as its
    // replica (after the failover, never as a second primary), the counter survives.
    let old = state
        .nodes
        .iter()
        .find(|n| format!("127.0.0.1:{}", n.port) == primary)
        .unwrap()
        .pid
        .unwrap();
    let killed = std::process::Command::new("kill")
        .args(["-9", &old.to_string()])
        .status();
    assert!(killed.unwrap().success());
    let started = Instant::now();
    let new_primary = loop {
        let report = supervisor.heal_pass().await.unwrap();
        let state = supervisor.state();
        let all_up = state.nodes.iter().all(|n| running(n.pid));
        match (&report.decision, &report.primary) {
            (Decision::Elected { .. }, Some(p)) if p.to_string() != primary && all_up => {
                break p.to_string();
            }
            _ => {}
        }
        assert!(
            started.elapsed() < CONVERGE,
            "no failover and rejoin: {report:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    println!("failover and rejoin took {:?}", started.elapsed());
    let status = local::status(&layout).await.unwrap();
    let old_node = status.nodes.iter().find(|n| n.address == primary).unwrap();
    assert!(
        old_node
            .role
            .as_deref()
            .unwrap_or("")
            .starts_with("replica of"),
        "{old_node:?}"
    );
    let mut app = app_conn(&layout, &new_primary).await;
    // MGET, as the library reads counters (the app role has no GET).
    let value: Vec<i64> = redis::cmd("MGET")
        .arg(KEY)
        .query_async(&mut app)
        .await
        .unwrap();
    assert_eq!(
        value,
        vec![7],
        "the acknowledged, replicated write survived the failover"
    );

    // The scheduled backup job, run now: it backs the store up into <dir>/backups as the
    // backup user, and its summary lands in the state.
    supervisor.set_jobs_binary(Path::new(env!("CARGO_BIN_EXE_abstore-jobs-cli")));
    assert!(supervisor.run_job_now("backup"));
    let deadline = Instant::now() + CONVERGE;
    let run = loop {
        supervisor.heal_pass().await.unwrap();
        if let Some(run) = supervisor.state().jobs.get("backup") {
            break run.clone();
        }
        assert!(Instant::now() < deadline, "the backup job did not finish");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(run.ok, "{run:?}");
    let summary: serde_json::Value = serde_json::from_str(run.summary.as_deref().unwrap()).unwrap();
    assert_eq!(summary["keys"], 1, "{summary}");
    assert!(
        summary["backup"]
            .as_str()
            .unwrap()
            .starts_with(&format!("file://{}", layout.backups_dir().display())),
        "{summary}"
    );

    // Stop, and up again from the directory: same ports, same passwords, same data.
    let pids: Vec<Option<u32>> = supervisor
        .state()
        .nodes
        .iter()
        .chain(&supervisor.state().sentinels)
        .map(|p| p.pid)
        .collect();
    supervisor.stop().await.unwrap();
    assert!(
        pids.iter().all(|pid| !running(*pid)),
        "stop left processes behind"
    );

    let supervisor = Supervisor::up(&spec, &dir).await.unwrap();
    let again = supervisor.state().clone();
    let ports = |s: &local::LocalState| s.nodes.iter().map(|n| n.port).collect::<Vec<_>>();
    assert_eq!(ports(&again), ports(&state));
    let mut app = app_conn(&layout, again.primary.as_deref().unwrap()).await;
    // MGET, as the library reads counters (the app role has no GET).
    let value: Vec<i64> = redis::cmd("MGET")
        .arg(KEY)
        .query_async(&mut app)
        .await
        .unwrap();
    assert_eq!(value, vec![7], "the data came back from the AOF");

    // A vanished `up` (dropped here without stop) leaves its servers running: down stops them.
    let pids: Vec<Option<u32>> = again
        .nodes
        .iter()
        .chain(&again.sentinels)
        .map(|p| p.pid)
        .collect();
    drop(supervisor);
    assert!(pids.iter().all(|pid| running(*pid)));
    let stopped = local::down(&layout, Duration::from_secs(10)).await.unwrap();
    assert_eq!(stopped.len(), 6, "{stopped:?}");
    assert!(
        pids.iter().all(|pid| !running(*pid)),
        "down left processes behind"
    );
}

#[tokio::test]
async fn up_refuses_a_bad_spec_naming_the_file_and_status_without_a_store_says_so() {
    let work = tempfile::tempdir().unwrap();
    let spec = work.path().join("bad.yaml");
    std::fs::write(
        &spec,
        "apiVersion: abstore.dev/v1alpha1\nkind: ABStore\nmetadata:\n  name: x\nspec:\n  sentinel:\n    quorum: 0\n",
    )
    .unwrap();
    let error = Supervisor::up(&spec, &work.path().join("d"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("bad.yaml") && error.contains("quorum"),
        "{error}"
    );

    let error = local::status(&Layout::new(work.path().join("nothing")))
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("local up"), "{error}");
}

/// A store's process whose port another program took is never taken for started: every process
/// of a store keeps its port (sentinels, replicas and clients know it by it), so `up` fails,
/// naming the process and the port, and leaves nothing running. (It used to count the other
/// program's listener as its process up, and the heal passes then restarted the process, which
/// exited at once, on every pass: a "restarted" process in the tests that ran beside others.)
#[tokio::test]
async fn up_refuses_a_port_that_another_program_took_and_leaves_nothing_running() {
    let work = tempfile::tempdir().unwrap();
    let spec = write_store(work.path());
    let dir = work.path().join("store");
    let _cleanup = KillOnDrop(dir.clone());
    let supervisor = Supervisor::up(&spec, &dir).await.unwrap();
    let layout = supervisor.layout().clone();
    let state = supervisor.state().clone();
    supervisor.stop().await.unwrap();

    let taken = state.sentinels[2].port;
    let squatter = std::net::TcpListener::bind(("127.0.0.1", taken)).unwrap();
    let error = Supervisor::up(&spec, &dir).await.unwrap_err();
    assert!(
        matches!(error, local::LocalError::PortTaken { port, .. } if port == taken),
        "{error}"
    );
    let message = error.to_string();
    assert!(
        message.contains("redis-sentinel 2") && message.contains(&taken.to_string()),
        "{message}"
    );
    let after = local::LocalState::read(&layout.state_file()).unwrap();
    assert_eq!(after.supervisor_pid, None);
    assert!(
        after
            .nodes
            .iter()
            .chain(&after.sentinels)
            .all(|p| p.pid.is_none()),
        "{after:?}"
    );
    for port in state
        .nodes
        .iter()
        .chain(&state.sentinels)
        .map(|p| p.port)
        .filter(|p| *p != taken)
    {
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "a process of the failed up still listens on {port}"
        );
    }
    drop(squatter);
}

/// A pid in the state file that now belongs to another store's server is left alone by `down`
/// (and by `up`, which stops what a killed `up` left running the same way): pids are reused
/// (within minutes on a busy machine with the default pid_max of 32768), and "redis" in the
/// command line is no proof; only a process that listens on its member's port is the store's.
#[tokio::test]
async fn down_leaves_alone_a_stale_pid_that_another_stores_server_now_has() {
    let work = tempfile::tempdir().unwrap();
    let spec = write_store(work.path());
    let dir = work.path().join("store");
    let _cleanup = KillOnDrop(dir.clone());
    let supervisor = Supervisor::up(&spec, &dir).await.unwrap();
    let layout = supervisor.layout().clone();
    supervisor.stop().await.unwrap();

    let other = abstore_tests::RedisServer::start_default().unwrap();
    let other_pid = other.pid().unwrap();
    let mut stale = local::LocalState::read(&layout.state_file()).unwrap();
    stale.nodes[0].pid = Some(other_pid);
    stale.write(&layout.state_file()).unwrap();
    let status = local::status(&layout).await.unwrap();
    assert!(!status.nodes[0].running, "{:?}", status.nodes[0]);
    let stopped = local::down(&layout, Duration::from_secs(10)).await.unwrap();
    assert!(stopped.is_empty(), "{stopped:?}");
    assert!(
        running(Some(other_pid)),
        "down stopped another store's server"
    );

    // `up` on the directory leaves it alone too, and starts its own node on its own port.
    stale.write(&layout.state_file()).unwrap();
    let supervisor = Supervisor::up(&spec, &dir).await.unwrap();
    assert!(
        running(Some(other_pid)),
        "up stopped another store's server"
    );
    assert_ne!(supervisor.state().nodes[0].pid, Some(other_pid));
    supervisor.stop().await.unwrap();
}

/// A process that answers slowly is not dead: `local up` restarts only a process that exited,
/// never one that missed probes. A replica and a sentinel frozen with SIGSTOP (what a loaded
/// machine's scheduling stall looks like, taken to the extreme) fail several consecutive heal
/// observations (each a probe timeout long) and keep their pids once they run again.
#[tokio::test]
async fn processes_that_stop_answering_for_a_while_are_not_restarted() {
    let work = tempfile::tempdir().unwrap();
    let spec = write_store(work.path());
    let dir = work.path().join("store");
    let _cleanup = KillOnDrop(dir.clone());
    let mut supervisor = Supervisor::up(&spec, &dir).await.unwrap();
    let state = supervisor.state().clone();
    let primary = state.primary.clone().unwrap();
    let replica = state
        .nodes
        .iter()
        .position(|n| format!("127.0.0.1:{}", n.port) != primary)
        .unwrap();
    let frozen = [
        state.nodes[replica].pid.unwrap(),
        state.sentinels[2].pid.unwrap(),
    ];
    let pids = |s: &local::LocalState| {
        s.nodes
            .iter()
            .chain(&s.sentinels)
            .map(|p| p.pid)
            .collect::<Vec<_>>()
    };
    let before = pids(&state);
    let signal = |name: &str| {
        for pid in frozen {
            let sent = std::process::Command::new("kill")
                .args([name, &pid.to_string()])
                .status();
            assert!(sent.unwrap().success());
        }
    };

    signal("-STOP");
    let mut missed = 0;
    let deadline = Instant::now() + CONVERGE;
    while missed < 3 {
        let report = supervisor.heal_pass().await;
        let report = report.unwrap();
        let node = &report.observation.nodes[replica].state;
        let sentinel = &report.observation.sentinels[2].state;
        if node.is_err() && sentinel.is_err() {
            missed += 1;
        }
        assert!(
            Instant::now() < deadline,
            "the frozen processes kept answering: {report:?}"
        );
    }
    signal("-CONT");
    let deadline = Instant::now() + CONVERGE;
    loop {
        let report = supervisor.heal_pass().await.unwrap();
        let answering = report.observation.nodes.iter().all(|n| n.state.is_ok())
            && report.observation.sentinels.iter().all(|s| s.state.is_ok());
        if answering {
            break;
        }
        assert!(Instant::now() < deadline, "not answering again: {report:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(pids(supervisor.state()), before, "a process was restarted");
    supervisor.stop().await.unwrap();
}
