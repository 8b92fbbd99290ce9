//! ACLs healed live and password rotation, on a real store run by `local up` (redis-server and
//! redis-sentinel processes healed by the operator's code): users changed by hand or by the
//! spec are made right without restarting anything, and rotated passwords (app, replication,
//! sentinel, operator at once) work at once, the old ones until the grace period ends, while a
//! writer and a reader using the abstore library never see an error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use abstore::connection::{Connection, Retry};
use abstore_operator::local::{self, Layout, LocalState, Supervisor};
use abstore_tests::local_store::{KillOnDrop, LocalSpec, Writer};
use tokio::time::Instant;

const CONVERGE: Duration = Duration::from_secs(30);
const GRACE_SECONDS: u64 = 6;
const KEY: &str = "ec:1700000000:flag:rotation";

fn spec_with(name: &str, auth: &str) -> String {
    let base = LocalSpec {
        redis_replicas: 2,
        ..LocalSpec::new(name)
    }
    .yaml();
    format!("{base}  auth:\n{auth}")
}

fn write_atomically(path: &Path, content: &str) {
    let tmp = path.with_extension("tmp-edit");
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn data_ports(state: &LocalState) -> Vec<u16> {
    state.nodes.iter().map(|n| n.port).collect()
}

/// Whether `user` can log in to `port` with `password` (and answer PING).
async fn logs_in(port: u16, user: &str, password: &str) -> bool {
    let Ok(client) = redis::Client::open(format!("redis://{user}:{password}@127.0.0.1:{port}"))
    else {
        return false;
    };
    match tokio::time::timeout(
        Duration::from_secs(2),
        client.get_multiplexed_async_connection(),
    )
    .await
    {
        // Logged in: PING answers, or is refused for lack of permission (not of a login).
        Ok(Ok(mut conn)) => match redis::cmd("PING").query_async::<String>(&mut conn).await {
            Ok(_) => true,
            Err(e) => e.code() == Some("NOPERM"),
        },
        _ => false,
    }
}

/// A command on a data node as `operator` with `password`.
async fn as_operator(port: u16, password: &str, args: &[&str]) -> redis::RedisResult<redis::Value> {
    let client = redis::Client::open(format!("redis://operator:{password}@127.0.0.1:{port}"))?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let mut cmd = redis::cmd(args[0]);
    for arg in &args[1..] {
        cmd.arg(*arg);
    }
    cmd.query_async(&mut conn).await
}

/// Runs heal passes until `done` holds or the deadline passes.
async fn heal_until<F, Fut>(supervisor: &mut Supervisor, what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + CONVERGE;
    loop {
        supervisor.heal_pass().await.unwrap();
        if done().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn pids(state: &LocalState) -> Vec<Option<u32>> {
    state
        .nodes
        .iter()
        .chain(&state.sentinels)
        .map(|p| p.pid)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hand_made_and_spec_changes_to_users_are_healed_live_without_restarts() {
    let work = tempfile::tempdir().unwrap();
    let spec = work.path().join("store.yaml");
    std::fs::write(
        &spec,
        spec_with("acl-heal", "    rotationGraceSeconds: 60\n"),
    )
    .unwrap();
    let dir = work.path().join("store");
    let _cleanup = KillOnDrop(dir.clone());
    let mut supervisor = Supervisor::up(&spec, &dir).await.unwrap();
    let layout = supervisor.layout().clone();
    let state = supervisor.state().clone();
    let started = pids(&state);
    let operator = std::fs::read_to_string(layout.credential_file("operator")).unwrap();
    let operator = operator.trim().to_owned();
    let ports = data_ports(&state);

    // Drift made by hand on every node: a user nobody declared, the default user switched on,
    // and the app given a command it must not have.
    for port in &ports {
        for args in [
            &[
                "ACL",
                "SETUSER",
                "intruder",
                "on",
                ">intruder-password",
                "~*",
                "+@all",
            ][..],
            &["ACL", "SETUSER", "default", "on", "nopass", "+@all", "~*"],
            &["ACL", "SETUSER", "app", "+flushall"],
        ] {
            as_operator(*port, &operator, args).await.unwrap();
        }
        assert!(logs_in(*port, "intruder", "intruder-password").await);
    }
    heal_until(&mut supervisor, "drift healed on every node", || {
        let ports = ports.clone();
        let operator = operator.clone();
        async move {
            for port in &ports {
                let users = as_operator(*port, &operator, &["ACL", "USERS"]).await;
                let Ok(redis::Value::Array(users)) = users else {
                    return false;
                };
                let names: Vec<String> = users
                    .iter()
                    .map(|u| redis::from_redis_value::<String>(u.clone()).unwrap())
                    .collect();
                if names.iter().any(|n| n == "intruder") {
                    return false;
                }
                let dryrun = as_operator(*port, &operator, &["ACL", "DRYRUN", "app", "FLUSHALL"])
                    .await
                    .unwrap();
                if matches!(dryrun, redis::Value::Okay) {
                    return false;
                }
                // The default user is off: a client without credentials is refused.
                let anonymous = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
                let mut conn = anonymous.get_multiplexed_async_connection().await.unwrap();
                if redis::cmd("PING")
                    .query_async::<String>(&mut conn)
                    .await
                    .is_ok()
                {
                    return false;
                }
            }
            true
        }
    })
    .await;

    // A user declared in the spec appears on every node, works, and goes again when removed.
    std::fs::write(
        &spec,
        spec_with(
            "acl-heal",
            "    rotationGraceSeconds: 60\n    users:\n    - {name: reporting, keys: ['ec:*'], commands: '+get +mget'}\n",
        ),
    )
    .unwrap();
    heal_until(&mut supervisor, "the declared user on every node", || {
        let ports = ports.clone();
        let layout = layout.clone();
        async move {
            let Ok(password) = std::fs::read_to_string(layout.credential_file("reporting")) else {
                return false;
            };
            for port in &ports {
                if !logs_in(*port, "reporting", password.trim()).await {
                    return false;
                }
            }
            true
        }
    })
    .await;
    let reporting = std::fs::read_to_string(layout.credential_file("reporting")).unwrap();
    let client = redis::Client::open(format!(
        "redis://reporting:{}@127.0.0.1:{}",
        reporting.trim(),
        ports[0]
    ))
    .unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("GET")
        .arg(KEY)
        .query_async::<Option<String>>(&mut conn)
        .await
        .unwrap();
    let refused = redis::cmd("SET")
        .arg(KEY)
        .arg(1)
        .query_async::<()>(&mut conn)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Some("NOPERM"), "{refused}");

    std::fs::write(
        &spec,
        spec_with("acl-heal", "    rotationGraceSeconds: 60\n"),
    )
    .unwrap();
    heal_until(
        &mut supervisor,
        "the removed user gone from every node",
        || {
            let ports = ports.clone();
            let reporting = reporting.clone();
            async move {
                for port in &ports {
                    if logs_in(*port, "reporting", reporting.trim()).await {
                        return false;
                    }
                }
                true
            }
        },
    )
    .await;

    // Nothing restarted for any of it.
    assert_eq!(pids(supervisor.state()), started);
}

/// Reads one key through the abstore library over and over (idempotent: a reconnect is
/// retried), counting successes and errors.
fn start_reader(
    connection: Connection,
) -> (
    Arc<AtomicBool>,
    Arc<AtomicU64>,
    tokio::task::JoinHandle<Vec<String>>,
) {
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let task = {
        let (stop, reads) = (stop.clone(), reads.clone());
        tokio::spawn(async move {
            let mut errors = Vec::new();
            let mut pipe = redis::pipe();
            // MGET, as the library reads counters (the app role has no GET).
            pipe.cmd("MGET").arg(KEY);
            while !stop.load(Ordering::Relaxed) {
                match connection
                    .exec::<(Vec<Option<i64>>,)>(&pipe, Retry::Idempotent, "rotation test read")
                    .await
                {
                    Ok(_) => {
                        reads.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => errors.push(e.to_string()),
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            errors
        })
    };
    (stop, reads, task)
}

fn operator_password(layout: &Layout) -> String {
    std::fs::read_to_string(layout.credential_file("operator"))
        .unwrap()
        .trim()
        .to_owned()
}

/// The data node that reports itself primary.
async fn primary_port(ports: &[u16], layout: &Layout) -> u16 {
    for port in ports {
        if let Ok(redis::Value::BulkString(info)) =
            as_operator(*port, &operator_password(layout), &["INFO", "replication"]).await
            && String::from_utf8_lossy(&info).contains("role:master")
        {
            return *port;
        }
    }
    panic!("no primary among {ports:?}");
}

/// The flags a sentinel gives the primary and each replica of `master`.
async fn sentinel_flags(port: u16, master: &str, operator: &str) -> Vec<String> {
    let Ok(client) = redis::Client::open(format!("redis://operator:{operator}@127.0.0.1:{port}"))
    else {
        return Vec::new();
    };
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
        return Vec::new();
    };
    let flags_of = |fields: &[String]| {
        fields
            .chunks(2)
            .find(|kv| kv[0] == "flags")
            .and_then(|kv| kv.get(1).cloned())
            .unwrap_or_default()
    };
    let mut flags = Vec::new();
    if let Ok(primary) = redis::cmd("SENTINEL")
        .arg("MASTER")
        .arg(master)
        .query_async::<Vec<String>>(&mut conn)
        .await
    {
        flags.push(flags_of(&primary));
    }
    if let Ok(replicas) = redis::cmd("SENTINEL")
        .arg("REPLICAS")
        .arg(master)
        .query_async::<Vec<Vec<String>>>(&mut conn)
        .await
    {
        flags.extend(replicas.iter().map(|r| flags_of(r)));
    }
    flags
}

/// IDs of the connections logged in as `app` on a node.
async fn app_client_ids(port: u16, layout: &Layout) -> Vec<String> {
    let list = as_operator(port, &operator_password(layout), &["CLIENT", "LIST"])
        .await
        .unwrap();
    let text: String = redis::from_redis_value(list).unwrap();
    text.lines()
        .filter(|line| line.split(' ').any(|field| field == "user=app"))
        .filter_map(|line| {
            line.split(' ')
                .next()?
                .strip_prefix("id=")
                .map(str::to_owned)
        })
        .collect()
}

/// Cuts every `app` connection on a node but the writer's.
async fn cut_app_clients(port: u16, layout: &Layout, keep: &[String]) {
    let ids = app_client_ids(port, layout).await;
    let mut cut = 0;
    for id in ids.iter().filter(|id| !keep.contains(id)) {
        as_operator(
            port,
            &operator_password(layout),
            &["CLIENT", "KILL", "ID", id],
        )
        .await
        .unwrap();
        cut += 1;
    }
    assert!(cut > 0, "no reader connection to cut among {ids:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotated_passwords_work_at_once_the_old_ones_until_the_grace_ends_and_clients_never_fail() {
    let work = tempfile::tempdir().unwrap();
    let spec = work.path().join("store.yaml");
    std::fs::write(
        &spec,
        spec_with(
            "rotation",
            &format!("    rotationGraceSeconds: {GRACE_SECONDS}\n"),
        ),
    )
    .unwrap();
    let dir = work.path().join("store");
    let _cleanup = KillOnDrop(dir.clone());
    let mut supervisor = Supervisor::up(&spec, &dir).await.unwrap();
    let layout = supervisor.layout().clone();
    let state = supervisor.state().clone();
    let started = pids(&state);
    let ports = data_ports(&state);
    let url = local::app_url(&layout, &state);

    // Replicas in sync and sentinels that know them, before anything rotates.
    heal_until(&mut supervisor, "replicas attached", || {
        let ports = ports.clone();
        let layout = layout.clone();
        async move {
            let operator = std::fs::read_to_string(layout.credential_file("operator")).unwrap();
            let mut good = false;
            for port in &ports {
                if let Ok(redis::Value::BulkString(info)) =
                    as_operator(*port, operator.trim(), &["INFO", "replication"]).await
                {
                    good |= String::from_utf8_lossy(&info).contains("min_slaves_good_slaves:1");
                }
            }
            good
        }
    })
    .await;

    // The reader's connections are cut during the rotation (it must log in again); the
    // writer's are not (a write cut in flight has an unknown outcome, which is not what this
    // test is about): it shows that logged-in connections outlive the old password.
    let primary_port = primary_port(&ports, &layout).await;
    let (stop_reader, reads, reader) = start_reader(Connection::open(&url).await.unwrap());
    let reader_ids = app_client_ids(primary_port, &layout).await;
    assert!(!reader_ids.is_empty());
    let mut writer = Writer::start(&layout, &state, KEY, Duration::from_millis(20))
        .await
        .unwrap();
    let writer_ids: Vec<String> = app_client_ids(primary_port, &layout)
        .await
        .into_iter()
        .filter(|id| !reader_ids.contains(id))
        .collect();
    assert!(!writer_ids.is_empty());

    // Rotate four users at once, as a person or External Secrets would: new file contents.
    let users = ["app", "replication", "sentinel", "operator"];
    let old: Vec<String> = users
        .iter()
        .map(|u| {
            std::fs::read_to_string(layout.credential_file(u))
                .unwrap()
                .trim()
                .to_owned()
        })
        .collect();
    let new: Vec<String> = users
        .iter()
        .map(|u| format!("rotated-{u}-password-0123456789abcdef"))
        .collect();
    for (user, password) in users.iter().zip(&new) {
        write_atomically(&layout.credential_file(user), password);
    }
    let rotated_at = Instant::now();

    // At once: both passwords of every rotated user work on every node.
    heal_until(
        &mut supervisor,
        "old and new passwords both accepted",
        || {
            let (ports, old, new) = (ports.clone(), old.clone(), new.clone());
            async move {
                for port in &ports {
                    for (i, user) in users.iter().enumerate() {
                        if !logs_in(*port, user, &new[i]).await
                            || !logs_in(*port, user, &old[i]).await
                        {
                            return false;
                        }
                    }
                }
                true
            }
        },
    )
    .await;
    assert!(
        rotated_at.elapsed() < Duration::from_secs(GRACE_SECONDS),
        "both passwords were not in force within the grace period"
    );
    // Clients reconnect during the rollover (their connections cut): they log in again.
    cut_app_clients(primary_port, &layout, &writer_ids).await;

    // After the grace period: only the new passwords.
    heal_until(&mut supervisor, "old passwords refused", || {
        let (ports, old, new) = (ports.clone(), old.clone(), new.clone());
        async move {
            for port in &ports {
                for (i, user) in users.iter().enumerate() {
                    if logs_in(*port, user, &old[i]).await || !logs_in(*port, user, &new[i]).await {
                        return false;
                    }
                }
            }
            true
        }
    })
    .await;
    assert!(rotated_at.elapsed() >= Duration::from_secs(GRACE_SECONDS));

    // Clients reconnect after the rotation: the library reads the new password from its file.
    // Replicas reconnect with the new masterauth.
    cut_app_clients(primary_port, &layout, &writer_ids).await;
    as_operator(
        primary_port,
        &new[3],
        &["CLIENT", "KILL", "TYPE", "replica"],
    )
    .await
    .unwrap();
    let reads_before = reads.load(Ordering::Relaxed);
    heal_until(
        &mut supervisor,
        "replica back with the new masterauth, reads going on",
        || {
            let reads = reads.clone();
            let password = new[3].clone();
            async move {
                let Ok(redis::Value::BulkString(info)) =
                    as_operator(primary_port, &password, &["INFO", "replication"]).await
                else {
                    return false;
                };
                let info = String::from_utf8_lossy(&info).into_owned();
                info.contains("min_slaves_good_slaves:1")
                    && reads.load(Ordering::Relaxed) > reads_before + 10
            }
        },
    )
    .await;

    // The sentinels' links to the data nodes log in again with the new sentinel password
    // (heal set their auth-pass during the rollover): every link cut, every node seen healthy.
    for port in &ports {
        as_operator(*port, &new[3], &["CLIENT", "KILL", "USER", "sentinel"])
            .await
            .unwrap();
    }
    let sentinel_ports: Vec<u16> = state.sentinels.iter().map(|s| s.port).collect();
    heal_until(
        &mut supervisor,
        "sentinels reconnected to every node",
        || {
            let sentinel_ports = sentinel_ports.clone();
            let operator = new[3].clone();
            async move {
                for port in &sentinel_ports {
                    let flags = sentinel_flags(*port, "rotation", &operator).await;
                    if flags.len() != 2
                        || flags
                            .iter()
                            .any(|f| f.contains("disconnected") || f.contains("down"))
                    {
                        return false;
                    }
                }
                true
            }
        },
    )
    .await;

    stop_reader.store(true, Ordering::Relaxed);
    let read_errors = reader.await.unwrap();
    let log = writer.stop().await;
    assert!(read_errors.is_empty(), "reads failed: {read_errors:?}");
    assert!(log.errors.is_empty(), "writes failed: {:?}", log.errors);
    assert!(log.acked > 50, "too few writes: {}", log.acked);
    assert!(reads.load(Ordering::Relaxed) > 50);

    // The sentinels authenticate with the new sentinel password: a failover still works.
    let primary_pid = supervisor
        .state()
        .nodes
        .iter()
        .find(|n| n.port == primary_port)
        .and_then(|n| n.pid)
        .unwrap();
    std::process::Command::new("kill")
        .args(["-9", &primary_pid.to_string()])
        .status()
        .unwrap();
    heal_until(&mut supervisor, "a new primary takes writes", || {
        let url = url.clone();
        // Bounded: heal passes must go on (they restart the killed node as a replica, which
        // min-replicas-to-write waits for).
        let write = async move {
            let app = Connection::open(&url).await.ok()?;
            let mut pipe = redis::pipe();
            pipe.cmd("INCRBY").arg(KEY).arg(1);
            app.exec::<(i64,)>(&pipe, Retry::NotIdempotent, "after failover")
                .await
                .ok()
        };
        async move {
            tokio::time::timeout(Duration::from_secs(2), write)
                .await
                .ok()
                .flatten()
                .is_some()
        }
    })
    .await;
    // And it was a failover (not the killed node restarted in place): the sentinels elected
    // the other node.
    let old_primary = format!("127.0.0.1:{primary_port}");
    let deadline = Instant::now() + CONVERGE;
    loop {
        let report = supervisor.heal_pass().await.unwrap();
        if report
            .primary
            .as_ref()
            .is_some_and(|p| p.to_string() != old_primary)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no failover away from {old_primary}: {report:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Nothing was restarted for the rotation (the killed primary aside).
    let now = pids(supervisor.state());
    for (i, pid) in started.iter().enumerate() {
        if *pid != Some(primary_pid) {
            assert_eq!(now[i], *pid, "process {i} restarted");
        }
    }
}
