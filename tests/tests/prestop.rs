//! The Redis pods' preStop hook (operator/src/config/prestop-redis.sh, as the operator renders
//! it) on real redis-server and redis-sentinel processes started from the rendered configs:
//! - run for the primary under a steady INCRBY writer, then `kill -TERM` of the old primary
//!   (what the kubelet does when the hook returns): the hook returns within its budget, another
//!   node is primary, the old one is its replica, and the counter equals the acknowledged
//!   increments exactly. Prints the figures (acknowledged, lost, longest outage);
//! - the same over TLS (`spec.tls`, every port TLS-only), on the store `local up` runs, with an
//!   `abstore` Sentinel-following writer;
//! - the failure paths leave the node safe: no replica connected (no pause, no sentinel asked), a
//!   refused failover and one Sentinel cannot start (pause released, still the primary), and the
//!   hook on a replica (nothing at all).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use abstore_operator::config::{
    self, ConfigPaths, PRESTOP_REDIS, PRESTOP_TIMEOUT_SECONDS, SCRIPT_LIB,
};
use abstore_operator::local::{self, Supervisor};
use abstore_tests::local_store::{self as local_store, KillOnDrop};
use abstore_tests::{
    LOOPBACK, RedisServer, Rendered, SentinelServer, query_role, wait_for_sentinels_to_know,
    wait_for_sync,
};
use redis::Value;
use redis::aio::MultiplexedConnection;
use tokio::sync::Mutex;

const MASTER: &str = "shop";
/// The operator's defaults (5 s, 10 s). A write pause longer than down-after makes the other
/// sentinels see the paused primary as down (their PINGs queue behind their hello PUBLISH, which
/// the pause holds); the defaults keep this test as far from that as production is.
const SPEC: &str = "sentinel: {downAfterMilliseconds: 5000, failoverTimeoutMilliseconds: 10000}";
const SYNC_TIMEOUT: Duration = Duration::from_secs(15);
const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the test waits for the writer to get going, a process to exit, a write to complete.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(20);
/// The counter the writer increments (a key the app role may write).
const COUNTER: &str = "ec:0:prestop:blue";
/// Acknowledged increments to see before the hook runs and again after the old primary stopped.
const WRITES_BEFORE_AND_AFTER: u64 = 300;
/// The writer's response timeout: longer than any pause the hook may set.
const WRITE_TIMEOUT: Duration = Duration::from_secs(90);

/// A primary, its replicas and sentinels, all from the rendered files.
struct Store {
    rendered: Rendered,
    /// Index 0 started as the primary.
    nodes: Vec<RedisServer>,
    sentinels: Vec<SentinelServer>,
}

impl Store {
    async fn start(replicas: usize, sentinels: usize) -> Store {
        let rendered = Rendered::new(SPEC);
        let config = rendered.redis_conf();
        let mut nodes = vec![RedisServer::start(&config).unwrap()];
        for _ in 0..replicas {
            nodes.push(RedisServer::start_replica_of(&config, &nodes[0]).unwrap());
        }
        for replica in &nodes[1..] {
            wait_for_sync(&rendered.url("operator", replica.port()), SYNC_TIMEOUT)
                .await
                .unwrap();
        }
        let peers: Vec<String> = nodes.iter().map(|n| n.addr()).collect();
        let sentinels: Vec<SentinelServer> = (0..sentinels)
            .map(|i| rendered.start_sentinel(i, &peers, None, "operator"))
            .collect();
        for sentinel in &sentinels {
            wait_for_sentinels_to_know(
                sentinel,
                MASTER,
                replicas,
                sentinels.len() - 1,
                DISCOVERY_TIMEOUT,
            )
            .await
            .unwrap();
        }
        Store {
            rendered,
            nodes,
            sentinels,
        }
    }

    fn operator(&self, port: u16) -> String {
        self.rendered.url("operator", port)
    }

    /// Runs the rendered hook for `node` as the kubelet would, pod settings pointed at loopback.
    /// `sentinel_port`: what `<n>-sentinel` resolves to; `budget`: the hook's timeout in seconds
    /// (the rendered one when `None`).
    fn run_hook(&self, node: u16, sentinel_port: u16, budget: Option<u64>) -> HookRun {
        let port = node.to_string();
        let mut env = vec![
            ("ABSTORE_LOCAL_HOST", LOOPBACK.to_owned()),
            ("ABSTORE_LOCAL_PORT", port.clone()),
            ("ABSTORE_ANNOUNCE_HOST", LOOPBACK.to_owned()),
            ("ABSTORE_ANNOUNCE_PORT", port),
            ("ABSTORE_SENTINEL_HOST", LOOPBACK.to_owned()),
            ("ABSTORE_SENTINEL_PORT", sentinel_port.to_string()),
        ];
        if let Some(seconds) = budget {
            env.push(("ABSTORE_PRESTOP_TIMEOUT", seconds.to_string()));
        }
        let started = Instant::now();
        // The hook blocks; the writer goes on on the runtime's other thread.
        let output = tokio::task::block_in_place(|| self.rendered.run_script(PRESTOP_REDIS, &env));
        HookRun {
            took: started.elapsed(),
            output,
        }
    }
}

struct HookRun {
    took: Duration,
    output: Output,
}

impl HookRun {
    fn log(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    fn assert_success(&self) {
        assert!(
            self.output.status.success(),
            "preStop failed:\n{}",
            self.log()
        );
    }
}

async fn conn(url: &str) -> redis::RedisResult<MultiplexedConnection> {
    conn_with_timeout(url, Duration::from_secs(5)).await
}

async fn conn_with_timeout(
    url: &str,
    response_timeout: Duration,
) -> redis::RedisResult<MultiplexedConnection> {
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(response_timeout));
    redis::Client::open(url)?
        .get_multiplexed_async_connection_with_config(&config)
        .await
}

async fn run(url: &str, args: &[&str]) -> redis::RedisResult<Value> {
    redis::cmd(args[0])
        .arg(&args[1..])
        .query_async(&mut conn(url).await?)
        .await
}

/// `INFO commandstats`: calls per command (ACL names, `client|pause`).
async fn command_calls(url: &str) -> BTreeMap<String, u64> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut conn(url).await.unwrap())
        .await
        .unwrap();
    info.lines()
        .filter_map(|line| line.trim_end().strip_prefix("cmdstat_"))
        .filter_map(|line| {
            let (name, fields) = line.split_once(':')?;
            let calls = fields.split(',').find_map(|f| f.strip_prefix("calls="))?;
            Some((name.to_owned(), calls.parse().ok()?))
        })
        .collect()
}

fn calls(stats: &BTreeMap<String, u64>, command: &str) -> u64 {
    stats.get(command).copied().unwrap_or(0)
}

async fn reset_stats(url: &str) {
    run(url, &["CONFIG", "RESETSTAT"]).await.unwrap();
}

/// `ROLE` of a replica: the primary it follows.
async fn primary_of(url: &str) -> Option<(String, u16)> {
    match run(url, &["ROLE"]).await.ok()? {
        Value::Array(items) if items.len() >= 3 => {
            let text = |v: &Value| match v {
                Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
                Value::Int(n) => Some(n.to_string()),
                _ => None,
            };
            (text(&items[0])? == "slave").then_some(())?;
            Some((text(&items[1])?, text(&items[2])?.parse().ok()?))
        }
        _ => None,
    }
}

async fn named_primary(sentinel: &SentinelServer) -> (String, u16) {
    sentinel.primary_addr(MASTER).await.unwrap().unwrap()
}

/// A port nothing should connect to: the hook must not ask any sentinel.
struct Trap(TcpListener);

impl Trap {
    fn new() -> Trap {
        let listener = TcpListener::bind((LOOPBACK, 0)).unwrap();
        listener.set_nonblocking(true).unwrap();
        Trap(listener)
    }

    fn port(&self) -> u16 {
        self.0.local_addr().unwrap().port()
    }

    fn assert_untouched(&self, what: &str) {
        match self.0.accept() {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            other => panic!("{what}: something connected to the sentinel port: {other:?}"),
        }
    }
}

/// Fails if a write to `url` is held: sends one and watches `blocked_clients` (a client held by
/// `CLIENT PAUSE` counts there) until the write is answered, executed or refused (`NOREPLICAS`
/// on a primary without replicas is an answer too).
async fn assert_writes_not_held(url: &str) {
    let mut writer = conn(url).await.unwrap();
    let write = tokio::spawn(async move {
        redis::cmd("INCRBY")
            .arg(COUNTER)
            .arg(1)
            .query_async::<i64>(&mut writer)
            .await
    });
    let deadline = Instant::now() + STEP_TIMEOUT;
    loop {
        if write.is_finished() {
            if let Err(e) = write.await.unwrap() {
                assert!(e.code().is_some(), "the write got no answer: {e}");
            }
            return;
        }
        let info: String = redis::cmd("INFO")
            .arg("clients")
            .query_async(&mut conn(url).await.unwrap())
            .await
            .unwrap();
        let blocked = info
            .lines()
            .find_map(|l| l.trim_end().strip_prefix("blocked_clients:"))
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap();
        assert_eq!(blocked, 0, "a write is held by a pause left behind");
        assert!(Instant::now() < deadline, "the write was not answered");
        tokio::time::sleep(POLL).await;
    }
}

/// What the writer saw.
#[derive(Clone, Debug, Default)]
struct WriterLog {
    acked: u64,
    /// Increments whose reply never came (the link broke with them in flight).
    unknown: u64,
    /// Refusals by error code (`READONLY`, `NOREPLICAS`, …): not executed.
    refused: BTreeMap<String, u64>,
    /// The longest time between two acknowledgements, and when it began.
    longest_gap: Duration,
    last_ack: Option<Instant>,
}

/// Plain `INCRBY counter 1`, one at a time on one connection to the primary's address; on any
/// error it reconnects to whatever the sentinels name as the primary now, like a client behind
/// the `<n>-primary` Service, whose endpoint the operator moves on `+switch-master`. It asks the
/// sentinels last to first: the hook asks the first one to fail over, and the others name the
/// new primary only once that one has announced the switch, about when the Service would move.
struct Writer {
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<WriterLog>>,
    task: tokio::task::JoinHandle<()>,
}

impl Writer {
    fn start(store: &Store) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(WriterLog::default()));
        let sentinels: Vec<String> = store
            .sentinels
            .iter()
            .rev()
            .map(|s| store.rendered.url("app", s.port()))
            .collect();
        let password = store.rendered.password("app").to_owned();
        let task = {
            let (stop, log) = (stop.clone(), log.clone());
            tokio::spawn(async move {
                let mut current: Option<MultiplexedConnection> = None;
                while !stop.load(Ordering::Relaxed) {
                    let Some(connection) = current.as_mut() else {
                        current = primary_connection(&sentinels, &password).await;
                        if current.is_none() {
                            tokio::time::sleep(POLL).await;
                        }
                        continue;
                    };
                    let result = redis::cmd("INCRBY")
                        .arg(COUNTER)
                        .arg(1)
                        .query_async::<i64>(connection)
                        .await;
                    let mut log = log.lock().await;
                    match result {
                        Ok(_) => {
                            let now = Instant::now();
                            if let Some(last) = log.last_ack {
                                log.longest_gap = log.longest_gap.max(now - last);
                            }
                            log.last_ack = Some(now);
                            log.acked += 1;
                        }
                        Err(e) => {
                            match e.code() {
                                Some(code) => *log.refused.entry(code.to_owned()).or_default() += 1,
                                None => log.unknown += 1,
                            }
                            current = None;
                            drop(log);
                            tokio::time::sleep(POLL).await;
                        }
                    }
                }
            })
        };
        Writer { stop, log, task }
    }

    async fn log(&self) -> WriterLog {
        self.log.lock().await.clone()
    }

    async fn wait_for_acks(&self, at_least: u64) {
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            let log = self.log().await;
            if log.acked >= at_least {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the writer reached {} of {at_least} acknowledged increments: {log:?}",
                log.acked
            );
            tokio::time::sleep(POLL).await;
        }
    }

    async fn stop(self) -> WriterLog {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap();
        self.log.lock().await.clone()
    }
}

/// A connection (as the app) to the node the first answering sentinel names.
async fn primary_connection(sentinels: &[String], password: &str) -> Option<MultiplexedConnection> {
    for sentinel in sentinels {
        let Ok(Value::Array(addr)) =
            run(sentinel, &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER]).await
        else {
            continue;
        };
        let [Value::BulkString(host), Value::BulkString(port)] = addr.as_slice() else {
            continue;
        };
        let url = format!(
            "redis://app:{password}@{}:{}",
            String::from_utf8_lossy(host),
            String::from_utf8_lossy(port)
        );
        // Writes go through whatever this address is: ROLE is not checked, as a Service
        // would not check it either. A write held by a pause waits (up to the hook's budget)
        // rather than time out into an unknown outcome.
        return conn_with_timeout(&url, WRITE_TIMEOUT).await.ok();
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planned_stop_of_the_primary_loses_no_acknowledged_write() {
    // The issue: deleting the primary pod under a steady writer lost 0.64–1.7 % of acknowledged
    // increments, because the hook failed over without pausing writes; now the old primary may
    // acknowledge nothing after the promotion.
    let mut store = Store::start(2, 3).await;
    let old_port = store.nodes[0].port();
    let old = store.operator(old_port);
    let writer = Writer::start(&store);
    writer.wait_for_acks(WRITES_BEFORE_AND_AFTER).await;

    let hook = store.run_hook(old_port, store.sentinels[0].port(), None);
    let during = writer.log().await;
    println!("preStop took {:?}:\n{}", hook.took, hook.log());
    hook.assert_success();
    let budget = Duration::from_secs(PRESTOP_TIMEOUT_SECONDS.unsigned_abs());
    assert!(hook.took < budget, "the hook overran its {budget:?} budget");

    // Another node is primary for the sentinels, and the old one already follows it.
    let (_, new_port) = named_primary(&store.sentinels[0]).await;
    assert_ne!(new_port, old_port, "no failover happened");
    let followed = primary_of(&old).await;
    assert_eq!(
        followed.as_ref().map(|(_, port)| *port),
        Some(new_port),
        "the old primary is not a replica of the new one: {followed:?}"
    );

    // The kubelet stops the container when the hook returns.
    let pid = store.nodes[0].pid().unwrap();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + STEP_TIMEOUT;
    while store.nodes[0].is_running() {
        assert!(Instant::now() < deadline, "the old primary ignored SIGTERM");
        tokio::time::sleep(POLL).await;
    }
    writer
        .wait_for_acks(writer.log().await.acked + WRITES_BEFORE_AND_AFTER)
        .await;
    let log = writer.stop().await;

    let counted: i64 = redis::cmd("GET")
        .arg(COUNTER)
        .query_async(&mut conn(&store.operator(new_port)).await.unwrap())
        .await
        .unwrap();
    let counted = u64::try_from(counted).unwrap();
    println!(
        "acknowledged {} increments ({} before the hook returned), counted {counted}, lost {}, \
         outcome unknown {}, refused {:?}, longest outage {:?}",
        log.acked,
        during.acked,
        log.acked.saturating_sub(counted),
        log.unknown,
        log.refused,
        log.longest_gap
    );
    assert_eq!(
        counted, log.acked,
        "the counter must equal the acknowledged increments exactly"
    );
    assert!(hook.log().contains("demoted"), "{}", hook.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_without_connected_replicas_stops_at_once_without_pausing() {
    // Nothing to fail over to: the hook must neither hold writes nor wait for the sentinels.
    let store = Store::start(0, 0).await;
    let port = store.nodes[0].port();
    let url = store.operator(port);
    reset_stats(&url).await;
    let sentinel = Trap::new();

    let hook = store.run_hook(port, sentinel.port(), None);
    hook.assert_success();
    assert!(
        hook.log().contains("no replica is connected"),
        "{}",
        hook.log()
    );
    sentinel.assert_untouched("no replica");
    let stats = command_calls(&url).await;
    assert_eq!(calls(&stats, "client|pause"), 0, "{stats:?}");
    assert_eq!(query_role(&url).await.unwrap(), "master");
    assert_writes_not_held(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_failover_releases_the_pause_and_leaves_the_primary_in_place() {
    // Writes were paused for the failover; when Sentinel refuses it, no promotion can follow,
    // so the node must go on as the primary and accept writes at once.
    let store = Store::start(1, 1).await;
    let port = store.nodes[0].port();
    let url = store.operator(port);
    // The sentinel refuses the Redis pods' FAILOVER (NOPERM), after their other questions.
    let sentinel_admin = store.operator(store.sentinels[0].port());
    run(
        &sentinel_admin,
        &["ACL", "SETUSER", "replication", "-sentinel|failover"],
    )
    .await
    .unwrap();
    reset_stats(&url).await;

    let hook = store.run_hook(port, store.sentinels[0].port(), Some(30));
    hook.assert_success();
    println!("preStop took {:?}:\n{}", hook.took, hook.log());
    assert!(hook.log().contains("refused"), "{}", hook.log());
    assert!(hook.log().contains("NOPERM"), "{}", hook.log());
    let stats = command_calls(&url).await;
    assert_eq!(calls(&stats, "client|pause"), 1, "{stats:?}");
    assert_eq!(calls(&stats, "client|unpause"), 1, "{stats:?}");
    assert_eq!(calls(&stats, "replicaof"), 0, "{stats:?}");
    assert_eq!(query_role(&url).await.unwrap(), "master");
    assert_eq!(named_primary(&store.sentinels[0]).await.1, port);
    assert_writes_not_held(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_sentinel_cannot_start_is_retried_with_writes_flowing_then_given_up() {
    // NOGOODSLAVE (here: the only replica has priority 0) is retried until the budget is spent;
    // each attempt pauses and unpauses, and the node ends as the primary, unpaused.
    let store = Store::start(1, 1).await;
    let port = store.nodes[0].port();
    let url = store.operator(port);
    let replica = store.operator(store.nodes[1].port());
    run(&replica, &["CONFIG", "SET", "replica-priority", "0"])
        .await
        .unwrap();
    // Sentinel reads a replica's priority from its INFO, every 10 s.
    let sentinel_admin = store.operator(store.sentinels[0].port());
    let deadline = Instant::now() + STEP_TIMEOUT;
    loop {
        let replicas = run(&sentinel_admin, &["SENTINEL", "REPLICAS", MASTER])
            .await
            .unwrap();
        if sentinel_priority_zero(&replicas) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the sentinel never read priority 0"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    reset_stats(&url).await;

    // The budget leaves a few seconds of attempts after the hook's final guard (3 calls of
    // ABSTORE_CLI_TIMEOUT 3 s plus 1 s).
    let hook = store.run_hook(port, store.sentinels[0].port(), Some(16));
    hook.assert_success();
    println!("preStop took {:?}:\n{}", hook.took, hook.log());
    let log = hook.log();
    assert!(log.contains("NOGOODSLAVE"), "{log}");
    assert!(log.contains("stopping as the primary"), "{log}");
    let stats = command_calls(&url).await;
    let paused = calls(&stats, "client|pause");
    assert!(paused >= 1, "{stats:?}");
    assert_eq!(calls(&stats, "client|unpause"), paused, "{stats:?}");
    assert_eq!(calls(&stats, "replicaof"), 0, "{stats:?}");
    assert_eq!(query_role(&url).await.unwrap(), "master");
    assert_eq!(named_primary(&store.sentinels[0]).await.1, port);
    assert_writes_not_held(&url).await;
}

fn sentinel_priority_zero(replicas: &Value) -> bool {
    let Value::Array(entries) = replicas else {
        return false;
    };
    entries.iter().any(|entry| {
        let Value::Array(fields) = entry else {
            return false;
        };
        fields.chunks(2).any(|pair| {
            matches!(pair, [Value::BulkString(k), Value::BulkString(v)]
                if k.as_slice() == b"slave-priority" && v.as_slice() == b"0")
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_replica_the_hook_does_nothing() {
    // Replicas stop without ceremony: no pause, no demotion, no question to the sentinels.
    let store = Store::start(1, 0).await;
    let primary = store.operator(store.nodes[0].port());
    let replica_port = store.nodes[1].port();
    let replica = store.operator(replica_port);
    reset_stats(&primary).await;
    reset_stats(&replica).await;
    let sentinel = Trap::new();

    let hook = store.run_hook(replica_port, sentinel.port(), None);
    hook.assert_success();
    assert!(hook.log().contains("is a replica"), "{}", hook.log());
    sentinel.assert_untouched("replica");
    for (node, url) in [("primary", &primary), ("replica", &replica)] {
        let stats = command_calls(url).await;
        for command in ["client|pause", "client|unpause", "replicaof", "slaveof"] {
            assert_eq!(calls(&stats, command), 0, "{node}: {stats:?}");
        }
    }
    assert_eq!(query_role(&primary).await.unwrap(), "master");
    assert_eq!(
        primary_of(&replica).await.map(|(_, port)| port),
        Some(store.nodes[0].port())
    );
}

/// A TLS-only store for `local up`, with the operator's default Sentinel timings (see `SPEC`).
const TLS_STORE: &str = "\
apiVersion: abstore.dev/v1alpha1
kind: ABStore
metadata:
  name: prestop-tls
spec:
  redis:
    replicas: 3
  sentinel:
    replicas: 3
    downAfterMilliseconds: 5000
    failoverTimeoutMilliseconds: 10000
  tls:
    enabled: true
    secretName: prestop-tls
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_the_hook_hands_over_the_same_way() {
    // Every port is TLS-only: each command of the hook (to this node, the new primary and the
    // sentinels) must go through the scripts' TLS options with the mounted CA, or no handover.
    let work = tempfile::tempdir().unwrap();
    let spec = work.path().join("store.yaml");
    std::fs::write(&spec, TLS_STORE).unwrap();
    let dir = work.path().join("store");
    let _cleanup = KillOnDrop(dir.clone());
    let supervisor = Supervisor::up(&spec, &dir).await.unwrap();
    let layout = supervisor.layout().clone();
    let state = supervisor.state().clone();
    let old = state.primary.clone().unwrap();
    let old_port = old.rsplit_once(':').unwrap().1.to_owned();

    // The scripts as a pod gets them, with local up's credentials and certificates mounted.
    let scripts = work.path().join("config");
    std::fs::create_dir_all(&scripts).unwrap();
    let text = |p: std::path::PathBuf| p.display().to_string();
    let paths = ConfigPaths {
        data_dir: text(dir.clone()),
        acl_file: text(layout.acl_file()),
        tls_dir: text(layout.tls_dir()),
        credentials_dir: text(layout.credentials_dir()),
        config_dir: text(scripts.clone()),
    };
    let files = config::config_files(&local::load_model(&spec).unwrap(), &paths);
    assert!(files.get(SCRIPT_LIB).unwrap().contains("ABSTORE_TLS:=yes"));
    for name in [SCRIPT_LIB, PRESTOP_REDIS] {
        std::fs::write(scripts.join(name), files.get(name).unwrap()).unwrap();
    }

    let mut writer = local_store::Writer::start(&layout, &state, COUNTER, Duration::from_millis(1))
        .await
        .unwrap();
    let deadline = Instant::now() + STEP_TIMEOUT;
    while writer.log().await.acked < WRITES_BEFORE_AND_AFTER {
        assert!(Instant::now() < deadline, "{:?}", writer.log().await);
        tokio::time::sleep(POLL).await;
    }
    let sentinel_port = state.sentinels[0].port.to_string();
    let started = Instant::now();
    let output = tokio::task::block_in_place(|| {
        std::process::Command::new("sh")
            .arg(scripts.join(PRESTOP_REDIS))
            .envs([
                ("ABSTORE_LOCAL_HOST", LOOPBACK),
                ("ABSTORE_LOCAL_PORT", old_port.as_str()),
                ("ABSTORE_ANNOUNCE_HOST", LOOPBACK),
                ("ABSTORE_ANNOUNCE_PORT", old_port.as_str()),
                ("ABSTORE_SENTINEL_HOST", LOOPBACK),
                ("ABSTORE_SENTINEL_PORT", sentinel_port.as_str()),
            ])
            .output()
            .unwrap()
    });
    let hook = HookRun {
        took: started.elapsed(),
        output,
    };
    println!("preStop over TLS took {:?}:\n{}", hook.took, hook.log());
    hook.assert_success();
    assert!(hook.log().contains("demoted"), "{}", hook.log());

    // Asked over TLS by `local status` (the operator's own observation): once every sentinel
    // names the new primary (the one that failed over lists the old address until it has
    // reconfigured the other replica), the old primary follows it.
    let deadline = Instant::now() + STEP_TIMEOUT;
    let (status, new) = loop {
        let status = local::status(&layout).await.unwrap();
        let named: Vec<Option<String>> =
            status.sentinels.iter().map(|s| s.primary.clone()).collect();
        if let Some(Some(first)) = named.first()
            && *first != old
            && named.iter().all(|n| n.as_ref() == Some(first))
        {
            let new = first.clone();
            break (status, new);
        }
        assert!(Instant::now() < deadline, "{status:?}");
        tokio::time::sleep(POLL).await;
    };
    let old_node = status.nodes.iter().find(|n| n.address == old).unwrap();
    assert!(
        old_node
            .role
            .as_deref()
            .is_some_and(|role| role.starts_with(&format!("replica of {new} "))),
        "{status:?}"
    );

    let acked = writer.log().await.acked;
    let deadline = Instant::now() + STEP_TIMEOUT;
    while writer.log().await.acked < acked + WRITES_BEFORE_AND_AFTER {
        assert!(Instant::now() < deadline, "{:?}", writer.log().await);
        tokio::time::sleep(POLL).await;
    }
    let log = writer.stop().await;
    let counted = u64::try_from(writer.value().await.unwrap()).unwrap();
    println!(
        "over TLS: acknowledged {}, counted {counted}, outcome unknown {}, errors {}, slowest \
         acknowledged write {:?}",
        log.acked,
        log.unknown,
        log.errors.len(),
        log.slowest.map(|(took, _)| took)
    );
    assert_eq!(counted, log.acked, "{log:?}");
}
