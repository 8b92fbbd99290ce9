//! The operator's rendered redis.conf, sentinel.conf, ACL file and pod scripts, run in real
//! redis-server / redis-sentinel processes on loopback: Redis accepts them, the settings are in
//! force, each built-in role can do its job and nothing more, replication and Sentinel failover
//! work with the replication and sentinel users, and the start scripts pick the right primary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use abstore::connection::Connection;
use abstore::counters::{Event, Outcome, Recorder, RecorderConfig};
use abstore::keys::Granularity;
use abstore::reads::{Metric, Reader, VariationStats};
use abstore_operator::config::{
    self, ConfigPaths, LIVENESS_REDIS, PRESTOP_REDIS, READINESS_REDIS, REDIS_CONF, START_REDIS,
    START_SENTINEL,
};
use abstore_tests::{
    LOOPBACK, RedisServer, Rendered, Role as ServerRole, SentinelServer, free_port, query_role,
    wait_for_failover, wait_for_replication_offset, wait_for_role, wait_for_sentinels_to_know,
    wait_for_sync,
};
use redis::Value;
use tempfile::TempDir;

const SYNC_TIMEOUT: Duration = Duration::from_secs(15);
const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(20);
/// down-after 1 s plus election, plus the failover-timeout guard after an earlier failover.
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(45);
/// Sentinel settings fast enough for tests (the CR's minimums allow them).
const FAST_SENTINEL: &str =
    "sentinel: {downAfterMilliseconds: 1000, failoverTimeoutMilliseconds: 3000}";
const DECLARED_USER: &str = "reporting";

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

async fn run(url: &str, args: &[&str]) -> redis::RedisResult<Value> {
    let client = redis::Client::open(url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let mut cmd = redis::cmd(args[0]);
    for arg in &args[1..] {
        cmd.arg(*arg);
    }
    cmd.query_async(&mut conn).await
}

async fn allowed(url: &str, args: &[&str]) -> Value {
    run(url, args)
        .await
        .unwrap_or_else(|e| panic!("{args:?} should be allowed: {e}"))
}

async fn refused(url: &str, args: &[&str]) {
    match run(url, args).await {
        Err(e) if e.code() == Some("NOPERM") => {}
        other => panic!("{args:?} should be refused with NOPERM, got {other:?}"),
    }
}

fn text(value: &Value) -> String {
    match value {
        Value::BulkString(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        Value::SimpleString(s) => s.clone(),
        Value::Okay => "OK".to_owned(),
        Value::Int(n) => n.to_string(),
        Value::Array(items) => items.iter().map(text).collect::<Vec<_>>().join(" "),
        other => format!("{other:?}"),
    }
}

async fn config_get(url: &str, name: &str) -> String {
    let reply = allowed(url, &["CONFIG", "GET", name]).await;
    match &reply {
        Value::Array(items) if items.len() == 2 => text(&items[1]),
        Value::Map(pairs) if pairs.len() == 1 => text(&pairs[0].1),
        other => panic!("CONFIG GET {name}: {other:?}"),
    }
}

/// Polls the primary's `INFO replication` until it counts `replicas` good replicas (acknowledged
/// within min-replicas-max-lag): only then does min-replicas-to-write let writes through.
async fn wait_for_good_replicas(primary_url: &str, replicas: u32) {
    let deadline = tokio::time::Instant::now() + SYNC_TIMEOUT;
    let mut last = String::new();
    while tokio::time::Instant::now() < deadline {
        if let Ok(info) = run(primary_url, &["INFO", "replication"]).await {
            last = text(&info);
            let good = last
                .lines()
                .find_map(|l| l.trim_end().strip_prefix("min_slaves_good_slaves:"))
                .and_then(|n| n.parse::<u32>().ok());
            if good.is_some_and(|n| n >= replicas) {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{primary_url} did not count {replicas} good replicas within {SYNC_TIMEOUT:?}: {last}");
}

/// Environment for a script run: pod settings pointed at loopback servers.
fn env<'a>(pairs: &[(&'a str, &str)]) -> Vec<(&'a str, String)> {
    pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rendered_redis_conf_boots_with_persistence_and_durability_in_force() {
    // Real Redis must accept every directive, and the CR's defaults must be what runs.
    let store = Rendered::new("redis: {maxmemory: 64Mi, config: {hz: '20'}}");
    let server = RedisServer::start(&store.redis_conf()).unwrap();
    let operator = store.url("operator", server.port());
    for (name, expected) in [
        ("appendonly", "yes"),
        ("appendfsync", "everysec"),
        ("save", "3600 1 300 100 60 10000"),
        ("maxmemory-policy", "noeviction"),
        ("maxmemory", "67108864"),
        ("min-replicas-to-write", "1"),
        ("min-replicas-max-lag", "10"),
        ("masteruser", "replication"),
        ("replica-read-only", "yes"),
        ("hz", "20"),
    ] {
        assert_eq!(config_get(&operator, name).await, expected, "{name}");
    }
    // min-replicas-to-write 1 is in force: a lone primary refuses writes instead of
    // acknowledging what a crash would lose.
    match run(&operator, &["SET", "ec:1:f:v", "1"]).await {
        Err(e) => assert_eq!(e.code(), Some("NOREPLICAS"), "{e}"),
        Ok(v) => panic!("a write without replicas was accepted: {v:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_can_do_its_job_and_is_refused_the_rest() {
    // Least privilege is only real if Redis enforces it; a single pod, so writes need no replica.
    let store = Rendered::new(&format!(
        "redis: {{replicas: 1}}\nauth:\n  users:\n  - {{name: {DECLARED_USER}, keys: ['ec:*'], commands: '+@read'}}"
    ));
    let server = RedisServer::start(&store.redis_conf()).unwrap();
    let port = server.port();

    // default: off.
    match run(&server.url(), &["PING"]).await {
        Err(e) => assert!(
            e.code() == Some("NOAUTH") || e.to_string().contains("NOAUTH"),
            "{e}"
        ),
        Ok(v) => panic!("the default user answered: {v:?}"),
    }
    let default_auth = run(&server.url(), &["AUTH", "default", "anything"]).await;
    assert!(default_auth.is_err(), "default user could log in");

    // app: records and reads through the real library, with the password from its file.
    let at = now();
    let app_url = store.library_url("app", &server.url());
    let recorder = Recorder::new(
        Connection::open(&app_url).await.unwrap(),
        RecorderConfig::default(),
    )
    .unwrap();
    let outcome = recorder
        .record(&Event::evaluation("flag", "blue", "u1", at).with_event_id("e-1"))
        .await
        .unwrap();
    assert_eq!(outcome, Outcome::Counted);
    let reader = Reader::new(
        Connection::open(&app_url).await.unwrap(),
        None,
        Granularity::Hour,
    );
    let point = reader
        .hour(&Metric::Evaluations, "flag", &["blue"], at)
        .await
        .unwrap();
    assert_eq!(
        point.variations["blue"],
        VariationStats { count: 1, users: 1 }
    );
    let hour = at - at.rem_euclid(3600);
    let counter = format!("ec:{hour}:flag:blue");
    let app = store.url("app", port);
    allowed(&app, &["SET", "as:flag:u2", "blue"]).await;
    allowed(&app, &["SET", "prod:ec:1:f:v", "1"]).await;
    for args in [
        &["FLUSHALL"][..],
        &["FLUSHDB"],
        &["CONFIG", "GET", "maxmemory"],
        &["CONFIG", "SET", "appendonly", "no"],
        &["KEYS", "*"],
        &["BGSAVE"],
        &["SCRIPT", "FLUSH"],
        &["ACL", "LIST"],
        &["REPLICAOF", "NO", "ONE"],
        &["SHUTDOWN"],
        &["SET", "not-a-schema-key", "1"],
    ] {
        refused(&app, args).await;
    }

    // backup: reads everything, writes nothing.
    let backup = store.url("backup", port);
    allowed(&backup, &["SCAN", "0", "COUNT", "100"]).await;
    assert_eq!(text(&allowed(&backup, &["GET", &counter]).await), "1");
    allowed(&backup, &["PEXPIRETIME", &counter]).await;
    allowed(&backup, &["TYPE", &counter]).await;
    allowed(&backup, &["INFO", "server"]).await;
    allowed(&backup, &["DBSIZE"]).await;
    // Exactly what the backup job sends: no DUMP, no key-by-key TTL probing.
    refused(&backup, &["DUMP", &counter]).await;
    refused(&backup, &["TTL", &counter]).await;
    for args in [
        &["SET", counter.as_str(), "2"][..],
        &["UNLINK", counter.as_str()],
        &["FLUSHALL"],
        &["CONFIG", "GET", "dir"],
    ] {
        refused(&backup, args).await;
    }

    // prune: unlinks day-keyed counters (also env-prefixed), nothing else.
    let prune = store.url("prune", port);
    allowed(&prune, &["SCAN", "0"]).await;
    allowed(&prune, &["DBSIZE"]).await;
    // Exactly what the prune job sends (SCAN, UNLINK, DBSIZE): it reads nothing.
    refused(&prune, &["PEXPIRETIME", &counter]).await;
    refused(&prune, &["GET", &counter]).await;
    refused(&prune, &["INFO"]).await;
    assert_eq!(
        text(&allowed(&prune, &["UNLINK", "prod:ec:1:f:v"]).await),
        "1"
    );
    refused(&prune, &["UNLINK", "as:flag:u2"]).await;
    refused(&prune, &["SET", &counter, "5"]).await;
    refused(&prune, &["FLUSHDB"]).await;

    // exporter: introspection only.
    let exporter = store.url("exporter", port);
    allowed(&exporter, &["INFO", "all"]).await;
    allowed(&exporter, &["CONFIG", "GET", "maxmemory"]).await;
    allowed(&exporter, &["SLOWLOG", "GET", "10"]).await;
    allowed(&exporter, &["LATENCY", "LATEST"]).await;
    // Not in redis_exporter's default scrape (least_privilege.rs): client lists carry other
    // clients' addresses and names.
    refused(&exporter, &["CLIENT", "LIST"]).await;
    refused(&exporter, &["DBSIZE"]).await;
    refused(&exporter, &["GET", &counter]).await;
    refused(&exporter, &["CONFIG", "SET", "maxmemory", "1"]).await;
    refused(&exporter, &["SLOWLOG", "RESET"]).await;
    // Its password is also in the redis_exporter sidecar: the preStop hook's pause and
    // demotion go with the replication user instead.
    refused(&exporter, &["CLIENT", "PAUSE", "1", "WRITE"]).await;
    refused(&exporter, &["REPLICAOF", "NO", "ONE"]).await;

    // replication and sentinel: their protocol commands, no data.
    let replication = store.url("replication", port);
    allowed(&replication, &["REPLCONF", "listening-port", "6380"]).await;
    refused(&replication, &["PING"]).await;
    refused(&replication, &["GET", &counter]).await;
    // The preStop hook's pause and demotion of its own node (REPLICAOF NO ONE on a primary
    // changes nothing), and no other administration.
    allowed(&replication, &["CLIENT", "PAUSE", "1", "WRITE"]).await;
    allowed(&replication, &["CLIENT", "UNPAUSE"]).await;
    allowed(&replication, &["REPLICAOF", "NO", "ONE"]).await;
    refused(&replication, &["SLAVEOF", "NO", "ONE"]).await;
    refused(&replication, &["CONFIG", "SET", "replica-priority", "0"]).await;
    refused(&replication, &["CLIENT", "KILL", "TYPE", "normal"]).await;
    refused(&replication, &["INFO", "replication"]).await;
    refused(&replication, &["FLUSHALL"]).await;
    let sentinel = store.url("sentinel", port);
    allowed(&sentinel, &["INFO", "replication"]).await;
    refused(&sentinel, &["GET", &counter]).await;
    refused(&sentinel, &["FLUSHALL"]).await;

    // a declared user: exactly its rules.
    let declared = store.url(DECLARED_USER, port);
    assert_eq!(text(&allowed(&declared, &["GET", &counter]).await), "1");
    refused(&declared, &["SET", &counter, "9"]).await;
    refused(&declared, &["GET", "as:flag:u2"]).await;

    // operator: admin.
    let operator = store.url("operator", port);
    allowed(&operator, &["CONFIG", "GET", "appendonly"]).await;
    allowed(&operator, &["ACL", "LIST"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_and_sentinels_from_rendered_files_replicate_and_fail_over() {
    // The replication user must be enough for PSYNC and the sentinel user for a whole failover
    // (REPLICAOF, CONFIG REWRITE, CLIENT KILL); a missing permission only shows here.
    let store = Rendered::new(FAST_SENTINEL);
    let config = store.redis_conf();
    let primary = RedisServer::start(&config).unwrap();
    let mut nodes = vec![primary];
    for _ in 0..2 {
        let replica = RedisServer::start_replica_of(&config, &nodes[0]).unwrap();
        nodes.push(replica);
    }
    for replica in &nodes[1..] {
        wait_for_sync(&store.url("operator", replica.port()), SYNC_TIMEOUT)
            .await
            .unwrap();
    }

    // Sentinels from start-sentinel.sh: no sentinel answers yet, so each finds the primary by
    // asking the Redis pods' ROLE as the sentinel user.
    let peers: Vec<String> = nodes.iter().map(|n| n.addr()).collect();
    let mut sentinels = Vec::new();
    for i in 0..3 {
        let runtime = Path::new(&store.paths.data_dir).join(format!("sentinel-{i}.conf"));
        let output = store.run_script(
            START_SENTINEL,
            &env(&[
                ("POD_NAME", &format!("shop-sentinel-{i}")),
                ("ABSTORE_ANNOUNCE_HOST", LOOPBACK),
                ("ABSTORE_SENTINEL_HOST", LOOPBACK),
                ("ABSTORE_SENTINEL_PORT", &free_port().unwrap().to_string()),
                ("ABSTORE_SENTINEL_ATTEMPTS", "1"),
                ("ABSTORE_PEERS", &peers.join(" ")),
                ("ABSTORE_RUNTIME_CONFIG", &runtime.display().to_string()),
                ("ABSTORE_DRY_RUN", "yes"),
            ]),
        );
        assert!(output.status.success(), "{}", stderr(&output));
        let conf = std::fs::read_to_string(&runtime).unwrap();
        let monitor = format!(
            "sentinel monitor shop {} 2\n",
            nodes[0].addr().replace(':', " ")
        );
        assert!(conf.contains(&monitor), "{conf}");
        let sentinel_pass = format!(
            "sentinel sentinel-pass \"{}\"\n",
            store.password("sentinel")
        );
        assert!(conf.contains(&sentinel_pass), "{conf}");
        let mut sentinel = SentinelServer::start(&conf).unwrap();
        // The sentinels' default user is off: the harness asks as a client may.
        sentinel.authenticate_as("app", store.password("app"));
        sentinels.push(sentinel);
    }
    for sentinel in &sentinels {
        wait_for_sentinels_to_know(sentinel, "shop", 2, 2, DISCOVERY_TIMEOUT)
            .await
            .unwrap();
    }

    // Write through Sentinel as the app; min-replicas-to-write 1 is satisfied by the replicas.
    wait_for_good_replicas(&store.url("operator", nodes[0].port()), 2).await;
    let hosts: Vec<String> = sentinels.iter().map(|s| s.addr()).collect();
    let url = store.library_url("app", &format!("redis+sentinel://{}/shop", hosts.join(",")));
    let recorder = Recorder::new(
        Connection::open(&url).await.unwrap(),
        RecorderConfig::default(),
    )
    .unwrap();
    let at = now();
    let first = recorder
        .record(&Event::evaluation("flag", "blue", "u1", at).with_event_id("e-1"))
        .await
        .unwrap();
    assert_eq!(first, Outcome::Counted);
    let old_primary = store.url("operator", nodes[0].port());
    for replica in &nodes[1..] {
        wait_for_replication_offset(
            &store.url("operator", replica.port()),
            &old_primary,
            SYNC_TIMEOUT,
        )
        .await
        .unwrap();
    }

    let old = (LOOPBACK, nodes[0].port());
    nodes[0].kill9().unwrap();
    let (_, new_port) = wait_for_failover(&sentinels[0], "shop", old, FAILOVER_TIMEOUT)
        .await
        .unwrap();
    assert_ne!(new_port, old.1);
    wait_for_role(
        &store.url("operator", new_port),
        ServerRole::Primary,
        FAILOVER_TIMEOUT,
    )
    .await
    .unwrap();

    // The event written before the crash is on the new primary, and writing goes on.
    let second = recorder
        .record(&Event::evaluation("flag", "blue", "u2", at).with_event_id("e-2"))
        .await
        .unwrap();
    assert_eq!(second, Outcome::Counted);
    let reader = Reader::new(
        Connection::open(&url).await.unwrap(),
        None,
        Granularity::Hour,
    );
    let point = reader
        .hour(&Metric::Evaluations, "flag", &["blue"], at)
        .await
        .unwrap();
    assert_eq!(
        point.variations["blue"],
        VariationStats { count: 2, users: 2 }
    );

    // A switchover needs a replica the sentinels consider healthy: the remaining one, once
    // it is reconfigured to follow the new primary.
    wait_for_sentinels_to_know(&sentinels[1], "shop", 1, 2, DISCOVERY_TIMEOUT)
        .await
        .unwrap();
    // preStop on the new primary: a planned switchover through the sentinel (writes paused as
    // the replication user, the replicas' offsets and the new primary's ROLE read as the
    // exporter), ending with this node demoted.
    let output = store.run_script(
        PRESTOP_REDIS,
        &env(&[
            ("ABSTORE_LOCAL_HOST", LOOPBACK),
            ("ABSTORE_LOCAL_PORT", &new_port.to_string()),
            ("ABSTORE_ANNOUNCE_HOST", LOOPBACK),
            ("ABSTORE_ANNOUNCE_PORT", &new_port.to_string()),
            ("ABSTORE_SENTINEL_HOST", LOOPBACK),
            ("ABSTORE_SENTINEL_PORT", &sentinels[1].port().to_string()),
            (
                "ABSTORE_PRESTOP_TIMEOUT",
                &FAILOVER_TIMEOUT.as_secs().to_string(),
            ),
        ]),
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stderr(&output).contains("demoted"), "{}", stderr(&output));
    assert_eq!(
        query_role(&store.url("operator", new_port)).await.unwrap(),
        "slave"
    );
}

/// A primary with one synced replica that has replicated data, and a sentinel monitoring the
/// primary, all from rendered files: what the start script sees in a running store.
struct RunningStore {
    store: Rendered,
    primary: RedisServer,
    replica: RedisServer,
    sentinel: SentinelServer,
}

async fn running_store() -> RunningStore {
    let store = Rendered::new("redis: {replicas: 2}");
    let config = store.redis_conf();
    let primary = RedisServer::start(&config).unwrap();
    let replica = RedisServer::start_replica_of(&config, &primary).unwrap();
    let replica_url = store.url("operator", replica.port());
    wait_for_sync(&replica_url, SYNC_TIMEOUT).await.unwrap();
    let primary_url = store.url("operator", primary.port());
    wait_for_good_replicas(&primary_url, 1).await;
    allowed(&primary_url, &["SET", "exp:flag", "x"]).await;
    wait_for_replication_offset(&replica_url, &primary_url, SYNC_TIMEOUT)
        .await
        .unwrap();
    let sentinel_conf = format!(
        "{}\nsentinel monitor shop {LOOPBACK} {} 1\n{}sentinel auth-pass shop \"{}\"\n",
        store.files.get(config::SENTINEL_CONF).unwrap(),
        primary.port(),
        store.files.get(config::SENTINEL_MONITOR_CONF).unwrap(),
        store.password("sentinel")
    );
    let mut sentinel = SentinelServer::start(&sentinel_conf).unwrap();
    sentinel.authenticate_as("operator", store.password("operator"));
    RunningStore {
        store,
        primary,
        replica,
        sentinel,
    }
}

impl RunningStore {
    /// Runs start-redis.sh in dry-run mode as pod `ordinal` announcing `host:port`; returns the
    /// script's output and the config it wrote.
    fn start_script(
        &self,
        ordinal: u32,
        announce: (&str, u16),
        data_dir: &Path,
        sentinel_port: u16,
        peers: &[String],
    ) -> (Output, Option<String>) {
        let runtime = data_dir.join("runtime-redis.conf");
        let output = self.store.run_script(
            START_REDIS,
            &env(&[
                ("POD_NAME", &format!("shop-redis-{ordinal}")),
                ("ABSTORE_DATA_DIR", &data_dir.display().to_string()),
                ("ABSTORE_RUNTIME_CONFIG", &runtime.display().to_string()),
                ("ABSTORE_ANNOUNCE_HOST", announce.0),
                ("ABSTORE_ANNOUNCE_PORT", &announce.1.to_string()),
                ("ABSTORE_SENTINEL_HOST", LOOPBACK),
                ("ABSTORE_SENTINEL_PORT", &sentinel_port.to_string()),
                ("ABSTORE_SENTINEL_ATTEMPTS", "1"),
                ("ABSTORE_BOOTSTRAP_HOST", "shop-redis-0.example"),
                ("ABSTORE_BOOTSTRAP_PORT", "6379"),
                ("ABSTORE_PEERS", &peers.join(" ")),
                ("ABSTORE_DRY_RUN", "yes"),
            ]),
        );
        (output, std::fs::read_to_string(runtime).ok())
    }
}

fn empty_dir() -> TempDir {
    tempfile::tempdir().unwrap()
}

fn has_line(conf: &str, line: &str) -> bool {
    conf.lines().any(|l| l == line)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_start_script_replicates_the_primary_a_sentinel_reports_and_the_result_boots() {
    // A restarted pod must follow the current primary, whichever pod that is now.
    let running = running_store().await;
    let data = empty_dir();
    let (output, conf) = running.start_script(
        2,
        (LOOPBACK, free_port().unwrap()),
        data.path(),
        running.sentinel.port(),
        &[],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let conf = conf.unwrap();
    let replication_password = running.store.password("replication");
    assert!(
        has_line(
            &conf,
            &format!("replicaof {LOOPBACK} {}", running.primary.port())
        ),
        "{conf}"
    );
    assert!(
        has_line(&conf, &format!("masterauth \"{replication_password}\"")),
        "{conf}"
    );
    assert!(
        has_line(&conf, &format!("replica-announce-ip {LOOPBACK}")),
        "{conf}"
    );
    // What the script wrote is a config real Redis runs, and it replicates with it.
    let node = RedisServer::start(&conf).unwrap();
    wait_for_sync(&running.store.url("operator", node.port()), SYNC_TIMEOUT)
        .await
        .unwrap();

    // The probes see a synced replica as ready and alive, and a dead port as neither.
    let probe_env = |port: u16| {
        env(&[
            ("ABSTORE_LOCAL_HOST", LOOPBACK),
            ("ABSTORE_LOCAL_PORT", &port.to_string()),
        ])
    };
    for probe in [READINESS_REDIS, LIVENESS_REDIS] {
        let ok = running.store.run_script(probe, &probe_env(node.port()));
        assert!(ok.status.success(), "{probe}: {}", stderr(&ok));
        let dead = running
            .store
            .run_script(probe, &probe_env(free_port().unwrap()));
        assert!(!dead.status.success(), "{probe} passed on a dead port");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_sentinel_pod_0_bootstraps_and_the_others_follow_pod_0() {
    // The very first start of a store: nobody to ask, so pod 0 is the primary by convention.
    let store = Rendered::new("{}");
    let dead_sentinel = free_port().unwrap();
    let run = |ordinal: u32| {
        let data = empty_dir();
        let runtime = data.path().join("redis.conf");
        let output = store.run_script(
            START_REDIS,
            &env(&[
                ("POD_NAME", &format!("shop-redis-{ordinal}")),
                ("ABSTORE_DATA_DIR", &data.path().display().to_string()),
                ("ABSTORE_RUNTIME_CONFIG", &runtime.display().to_string()),
                ("ABSTORE_SENTINEL_HOST", LOOPBACK),
                ("ABSTORE_SENTINEL_PORT", &dead_sentinel.to_string()),
                ("ABSTORE_SENTINEL_ATTEMPTS", "1"),
                ("ABSTORE_PEERS", ""),
                ("ABSTORE_DRY_RUN", "yes"),
            ]),
        );
        assert!(output.status.success(), "{}", stderr(&output));
        std::fs::read_to_string(runtime).unwrap()
    };
    let pod0 = run(0);
    assert!(!pod0.contains("\nreplicaof "), "{pod0}");
    // The default announce name is the pod's DNS name through the headless Service.
    let fqdn = store.model.redis_pod_fqdn(0);
    assert!(
        has_line(&pod0, &format!("replica-announce-ip {fqdn}")),
        "{pod0}"
    );
    let pod1 = run(1);
    assert!(has_line(&pod1, &format!("replicaof {fqdn} 6379")), "{pod1}");
    // The rendered file itself never carries a password.
    let rendered = store.files.get(REDIS_CONF).unwrap();
    assert!(!rendered.lines().any(|l| l.starts_with("masterauth")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_sentinels_pod_0_follows_a_peer_that_is_already_primary() {
    // After a failover, pod 0 is not the primary any more; it must not become a second one.
    let running = running_store().await;
    let data = empty_dir();
    let peers = vec![running.replica.addr(), running.primary.addr()];
    let (output, conf) = running.start_script(
        0,
        ("shop-redis-0.example", 6379),
        data.path(),
        free_port().unwrap(),
        &peers,
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let conf = conf.unwrap();
    assert!(
        has_line(
            &conf,
            &format!("replicaof {LOOPBACK} {}", running.primary.port())
        ),
        "{conf}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_that_lost_its_volume_refuses_to_start_while_a_replica_holds_data() {
    // An empty primary would make its replicas drop everything they hold.
    let running = running_store().await;
    let me = (LOOPBACK, running.primary.port());
    let peers = vec![running.replica.addr()];
    let empty = empty_dir();
    let (output, _) = running.start_script(0, me, empty.path(), running.sentinel.port(), &peers);
    assert!(!output.status.success(), "an empty primary started");
    assert!(
        stderr(&output).contains("refusing to start as an empty primary"),
        "{}",
        stderr(&output)
    );

    // The same pod with its data still on the volume starts as the primary.
    let kept = empty_dir();
    std::fs::create_dir(kept.path().join("appendonlydir")).unwrap();
    let (output, conf) = running.start_script(0, me, kept.path(), running.sentinel.port(), &peers);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(!conf.unwrap().contains("\nreplicaof "));
}

#[test]
fn script_paths_default_to_the_pod_mounts() {
    // build mounts the ConfigMap and Secrets at these paths; the scripts must look there.
    let defaults = ConfigPaths::default();
    assert_eq!(defaults.config_dir, config::CONFIG_DIR);
    assert_eq!(
        PathBuf::from(&defaults.acl_file),
        Path::new(config::ACL_DIR).join(config::ACL_FILE_NAME)
    );
    assert_eq!(
        PathBuf::from(defaults.sentinel_acl_file()),
        Path::new(config::ACL_DIR).join(config::SENTINEL_ACL_FILE_NAME)
    );
}
