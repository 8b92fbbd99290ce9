//! Least privilege, measured rather than asserted: each component runs against real
//! redis-server processes started from the operator's rendered files with its user widened to
//! every command, and `INFO commandstats` then says exactly which commands it sent. A role's
//! grant must equal that set, plus extras listed here with the reason they cannot be observed on
//! this machine. A command the component needs but the role lacks, and a command the role grants
//! but nothing sends, both fail the test.
//!
//! The operator_config tests prove the other half: with the real (narrow) grants each role does
//! its job and is refused the rest.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};

use std::process::Output;
use std::time::Duration;

use abstore::assignment::WeightedVariation;
use abstore::connection::Connection;
use abstore::counters::{Event, Outcome, Recorder, RecorderConfig, WaitForReplicas};
use abstore::keys::Granularity;
use abstore::reads::{Metric, Reader};
use abstore::sticky::StickyAssigner;
use abstore_jobs::backup::{self, BackupOptions};
use abstore_jobs::prune::{self, PruneOptions};
use abstore_jobs::storage::Location;
use abstore_operator::config::{self, LIVENESS_REDIS, PRESTOP_REDIS, READINESS_REDIS};
use abstore_tests::{
    LOOPBACK, RedisServer, Rendered, SentinelServer, free_port, wait_for_failover,
    wait_for_sentinels_to_know, wait_for_sync,
};
use redis::Value;
use redis::aio::MultiplexedConnection;

const SYNC_TIMEOUT: Duration = Duration::from_secs(15);
const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(20);
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(45);
const FAST_SENTINEL: &str =
    "sentinel: {downAfterMilliseconds: 1000, failoverTimeoutMilliseconds: 3000}";

/// Commands every connection may send without a rule.
const RULE_FREE: &[&str] = &["auth"];

/// redis_exporter v1.62.0 cannot be installed on this machine (no container registry, no GitHub
/// releases; Debian's 1.45.0 scrapes the same but without LATENCY HISTOGRAM), so what it sends is taken from its source at the image the operator deploys
/// (oliver006/redis_exporter v1.62.0, exporter/exporter.go `scrapeRedisHost` with the default
/// flags the operator leaves in place): CLIENT SETNAME (`--set-client-name`, default on),
/// CONFIG GET *, INFO ALL, LATENCY LATEST and HISTOGRAM, SLOWLOG LEN and GET 1 (slowlog.go), in
/// this order on one connection; on a node whose INFO ALL says `cluster_enabled:1`, CLUSTER INFO
/// right after it (exporter.go:622-623; `--is-cluster` is not set, so nothing else changes). The
/// tests replay exactly these as the exporter user ([`replay_redis_exporter_scrape`]).
const REDIS_EXPORTER_SCRAPE: &[&[&str]] = &[
    &["CLIENT", "SETNAME", "redis_exporter"],
    &["CONFIG", "GET", "*"],
    &["INFO", "ALL"],
    &["LATENCY", "LATEST"],
    &["LATENCY", "HISTOGRAM"],
    &["SLOWLOG", "LEN"],
    &["SLOWLOG", "GET", "1"],
];

/// What redis_exporter adds to [`REDIS_EXPORTER_SCRAPE`] after an INFO ALL that says
/// `cluster_enabled:1`.
const REDIS_EXPORTER_CLUSTER_SCRAPE: &[&str] = &["CLUSTER", "INFO"];

/// The operator's view of one node, used only for ACL SETUSER, CONFIG RESETSTAT and INFO. Each
/// call opens its own connection (a failover's CLIENT KILL ends long-lived ones); its AUTH is
/// rule-free and not counted.
struct Stats {
    url: String,
}

impl Stats {
    async fn open(store: &Rendered, port: u16) -> Stats {
        Stats {
            url: store.url("operator", port),
        }
    }

    async fn conn(&self) -> MultiplexedConnection {
        redis::Client::open(self.url.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }

    /// Lets `user` run every command on every key and channel, keeping its password.
    async fn widen(&mut self, user: &str) {
        let _: () = redis::cmd("ACL")
            .arg(&["SETUSER", user, "+@all", "~*", "&*"])
            .query_async(&mut self.conn().await)
            .await
            .unwrap();
    }

    async fn reset(&mut self) {
        let _: () = redis::cmd("CONFIG")
            .arg("RESETSTAT")
            .query_async(&mut self.conn().await)
            .await
            .unwrap();
    }

    /// Commands executed (not rejected) since the reset, as ACL names (`client|setname`),
    /// without this connection's own CONFIG RESETSTAT and without the rule-free ones.
    async fn used(&mut self) -> BTreeSet<String> {
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut self.conn().await)
            .await
            .unwrap();
        info.lines()
            .filter_map(|line| line.trim_end().strip_prefix("cmdstat_"))
            .filter_map(|line| {
                let (name, fields) = line.split_once(':')?;
                let calls = fields
                    .split(',')
                    .find_map(|f| f.strip_prefix("calls="))?
                    .parse::<u64>()
                    .ok()?;
                (calls > 0).then(|| name.to_owned())
            })
            .filter(|name| name != "config|resetstat" && !RULE_FREE.contains(&name.as_str()))
            .collect()
    }
}

/// The commands a built-in role is granted on the data nodes, from the ACL the operator renders.
/// Grants are enumerated: a category (`+@read`) or a removal would make "exactly" meaningless.
fn granted(store: &Rendered, role: &str) -> BTreeSet<String> {
    let users = config::acl_users(&store.model, &store.credentials);
    let user = users
        .iter()
        .find(|u| u.name == role)
        .unwrap_or_else(|| panic!("no ACL user {role}"));
    let commands: BTreeSet<String> = user
        .rules
        .iter()
        .filter_map(|rule| rule.strip_prefix('+'))
        .map(str::to_owned)
        .collect();
    // Starting from nothing (`-@all`), then one `+command` at a time.
    if role != "operator" {
        for rule in user.rules.iter().filter(|r| r.starts_with(['+', '-'])) {
            assert!(
                rule == "-@all" || (rule.starts_with('+') && !rule.starts_with("+@")),
                "{role}: grants must list commands one by one, found {rule:?}"
            );
        }
    }
    commands
}

/// granted == used + extras, and every extra is granted and really unused here.
fn assert_exactly(
    role: &str,
    granted: &BTreeSet<String>,
    used: &BTreeSet<String>,
    extras: &[(&str, &str)],
) {
    let missing: Vec<&String> = used.difference(granted).collect();
    assert!(
        missing.is_empty(),
        "{role} sends {missing:?} but is not granted them (used: {used:?})"
    );
    for (command, why) in extras {
        assert!(
            granted.contains(*command),
            "{role}: extra {command} ({why}) is not granted"
        );
        assert!(
            !used.contains(*command),
            "{role}: {command} is listed as an extra ({why}) but was observed: drop it from the extras"
        );
    }
    let unused: Vec<&String> = granted
        .difference(used)
        .filter(|c| !extras.iter().any(|(e, _)| e == c))
        .collect();
    assert!(
        unused.is_empty(),
        "{role} is granted {unused:?} but nothing sends them (used: {used:?})"
    );
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn env<'a>(pairs: &[(&'a str, &str)]) -> Vec<(&'a str, String)> {
    pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect()
}

/// One scrape by redis_exporter as the user of `url`, on one connection like redis_exporter's:
/// [`REDIS_EXPORTER_SCRAPE`], and CLUSTER INFO after INFO ALL when its reply says
/// `cluster_enabled:1`. Every command must succeed; returns whether CLUSTER INFO was sent.
async fn replay_redis_exporter_scrape(url: &str) -> bool {
    let mut conn = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let mut clustered = false;
    for args in REDIS_EXPORTER_SCRAPE {
        let reply: Value = redis::cmd(args[0])
            .arg(&args[1..])
            .query_async(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("redis_exporter's {args:?} refused: {e}"));
        if args[0] == "INFO" {
            let info: String = redis::from_redis_value(reply).unwrap();
            clustered = info.contains("cluster_enabled:1");
            if clustered {
                let args = REDIS_EXPORTER_CLUSTER_SCRAPE;
                let _: Value = redis::cmd(args[0])
                    .arg(&args[1..])
                    .query_async(&mut conn)
                    .await
                    .unwrap_or_else(|e| panic!("redis_exporter's {args:?} refused: {e}"));
            }
        }
    }
    clustered
}

async fn run_as(url: &str, args: &[&str]) -> redis::RedisResult<Value> {
    let client = redis::Client::open(url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    redis::cmd(args[0])
        .arg(&args[1..])
        .query_async(&mut conn)
        .await
}

/// A one-node store (no replica needed for writes) and a sentinel that names it as the primary
/// but cannot log in to it (a wrong `auth-pass`): clients find the node through the sentinel as
/// they do in production, and the sentinel's own traffic is refused, so it does not count.
struct ClientBench {
    store: Rendered,
    node: RedisServer,
    _sentinel: SentinelServer,
    stats: Stats,
    sentinel_url: String,
}

impl ClientBench {
    async fn start() -> ClientBench {
        let store = Rendered::new("redis: {replicas: 1}");
        let node = RedisServer::start(&store.redis_conf()).unwrap();
        let sentinel_conf = format!(
            "{}\nsentinel monitor shop {LOOPBACK} {} 1\n{}sentinel auth-pass shop \"not-the-sentinel-password\"\n",
            store.files.get(config::SENTINEL_CONF).unwrap(),
            node.port(),
            store.files.get(config::SENTINEL_MONITOR_CONF).unwrap(),
        );
        let sentinel = SentinelServer::start(&sentinel_conf).unwrap();
        let sentinel_url = format!("redis+sentinel://{}/shop", sentinel.addr());
        let stats = Stats::open(&store, node.port()).await;
        ClientBench {
            store,
            node,
            _sentinel: sentinel,
            stats,
            sentinel_url,
        }
    }

    /// The URL a component gets from its credentials Secret (`sentinel-url`).
    fn url(&self, user: &str) -> String {
        self.store.library_url(user, &self.sentinel_url)
    }
}

/// Widens `role`, resets the counters, runs `work` and returns what it sent.
async fn measure(
    stats: &mut Stats,
    role: &str,
    work: impl std::future::Future<Output = ()>,
) -> BTreeSet<String> {
    stats.widen(role).await;
    stats.reset().await;
    work.await;
    stats.used().await
}

async fn app_workload(url: String) {
    let at = now();
    let config = RecorderConfig {
        // WAIT is part of the library's surface (durability option); 0 replicas answers at once.
        wait_for_replicas: Some(WaitForReplicas {
            replicas: 0,
            timeout: Duration::from_millis(100),
        }),
        ..RecorderConfig::default()
    };
    let recorder = Recorder::new(Connection::open(&url).await.unwrap(), config).unwrap();
    recorder.load_script().await.unwrap();
    let event = Event::evaluation("flag", "blue", "u1", at).with_event_id("e-1");
    assert_eq!(recorder.record(&event).await.unwrap(), Outcome::Counted);
    assert_eq!(recorder.record(&event).await.unwrap(), Outcome::Duplicate);
    let batch = recorder
        .record_batch(&[
            Event::evaluation("flag", "green", "u2", at - 3600),
            Event::goal("flag", "buy", "blue", "u1", at),
        ])
        .await
        .unwrap();
    assert!(
        batch
            .outcomes
            .iter()
            .all(|o| matches!(o, Ok(Outcome::Counted))),
        "{batch:?}"
    );

    let reader = Reader::new(
        Connection::open(&url).await.unwrap(),
        None,
        Granularity::Hour,
    );
    let variations = ["blue", "green"];
    let hour = reader
        .hour(&Metric::Evaluations, "flag", &variations, at)
        .await
        .unwrap();
    assert_eq!(hour.variations["blue"].count, 1);
    // A day over hourly buckets merges the HyperLogLogs server-side (the union script).
    reader
        .day(&Metric::Evaluations, "flag", &variations, at)
        .await
        .unwrap();
    reader
        .days(
            &Metric::Goal("buy".to_owned()),
            "flag",
            &variations,
            at - 86_400,
            at,
        )
        .await
        .unwrap();
    let conversion = reader
        .conversion("flag", "buy", &variations, at - 86_400, at)
        .await
        .unwrap();
    assert!(conversion.contains_key("blue"), "{conversion:?}");

    let sticky = StickyAssigner::new(
        Connection::open(&url).await.unwrap(),
        None,
        Duration::from_secs(3600),
    )
    .unwrap();
    let offered = |blue: u32| {
        vec![
            WeightedVariation {
                id: "blue".to_owned(),
                weight: blue,
            },
            WeightedVariation {
                id: "green".to_owned(),
                weight: 100 - blue,
            },
        ]
    };
    sticky.assign("flag", "u3", &offered(50)).await.unwrap();
    sticky.assign("flag", "u3", &offered(50)).await.unwrap();
    // Blue withdrawn: a user stored on blue is moved (the reassignment path).
    sticky.assign("flag", "u1", &offered(100)).await.unwrap();
    let moved = sticky.assign("flag", "u1", &offered(0)).await.unwrap();
    assert_eq!(moved.variation, "green", "{moved:?}");
}

/// Every route of the `abstore-api` binary that reaches Redis, as a browser client and a report
/// reader would call them: readiness, `track` (GET and form POST, participations and goals, a
/// duplicate), `experiment`, `all` (scoped, `unique=true`), the `/v1` list and results, the
/// `delete`. A second process with `--wait-replicas 1` tracks one event (WAIT): answered
/// `wait_status` (503 without a replica, as documented; 200 with one).
async fn api_workload(url: String, wait_status: u16) {
    use abstore_tests::api::{API_KEY, ApiProcess};
    let api = ApiProcess::start_url(&url, &[]).await;
    let client = reqwest::Client::new();
    let base = &api.base;
    let ok = |response: reqwest::Response| async move {
        let status = response.status();
        let body = response.text().await.unwrap();
        assert!(status.is_success(), "{status}: {body}");
        body
    };
    let track = |variant: &'static str, event: &'static str, uuid: &'static str| {
        client.get(format!("{base}/track")).query(&[
            ("experiment", "button"),
            ("variant", variant),
            ("event", event),
            ("uuid", uuid),
        ])
    };
    ok(client.get(format!("{base}/readyz")).send().await.unwrap()).await;
    for (variant, event, uuid) in [
        ("red", "participate", "u1"),
        ("red", "participate", "u1"),
        ("blue", "participate", "u2"),
        ("red", "buy", "u1"),
    ] {
        ok(track(variant, event, uuid).send().await.unwrap()).await;
    }
    ok(client
        .post(format!("{base}/track"))
        .form(&[
            ("experiment", "button"),
            ("variant", "blue"),
            ("event", "buy"),
            ("uuid", "u2"),
        ])
        .send()
        .await
        .unwrap())
    .await;
    let read = |path: &str| {
        client
            .get(format!("{base}{path}"))
            .header("x-api-key", API_KEY)
    };
    for path in [
        "/experiment?experiment=button",
        "/experiment?experiment=button&unique=true",
        "/all",
        "/all?scope=button",
        "/v1/experiments",
        "/v1/experiments/button",
        "/v1/experiments/button?granularity=hour",
    ] {
        ok(read(path).send().await.unwrap()).await;
    }
    let deleted = client
        .delete(format!("{base}/delete"))
        .query(&[("experiment", "button")])
        .header("x-api-key", API_KEY)
        .send()
        .await
        .unwrap();
    assert!(deleted.status().is_success(), "{}", deleted.status());
    drop(api);

    let waiting =
        ApiProcess::start_url(&url, &["--wait-replicas", "1", "--wait-timeout-ms", "1000"]).await;
    let answer = client
        .get(format!("{}/track", waiting.base))
        .query(&[
            ("experiment", "button"),
            ("variant", "red"),
            ("event", "participate"),
            ("uuid", "u9"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(
        answer.status(),
        wait_status,
        "track with WAIT for a replica"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_roles_are_granted_exactly_what_their_components_send() {
    let mut bench = ClientBench::start().await;

    // app: the abstore library's whole surface.
    let url = bench.url("app");
    let used = measure(&mut bench.stats, "app", app_workload(url)).await;
    assert_exactly("app", &granted(&bench.store, "app"), &used, &[]);

    // api: the tracking API binary's every route, from an empty script cache (as after a
    // restart of Redis: the recorder then loads its script).
    let operator = bench.store.url("operator", bench.node.port());
    run_as(&operator, &["SCRIPT", "FLUSH"]).await.unwrap();
    let url = bench.url("api");
    let used = measure(&mut bench.stats, "api", api_workload(url, 503)).await;
    assert_exactly("api", &granted(&bench.store, "api"), &used, &[]);

    // backup: every kind of key the job reads, with expiries.
    for args in [
        &["SET", "exp:flag", "{}", "EX", "3600"][..],
        &["HSET", "exp:flag:meta", "owner", "growth"],
        &["SADD", "exp:flags", "flag"],
        &["ZADD", "exp:rank", "1", "flag"],
        &["RPUSH", "exp:log", "created"],
    ] {
        run_as(&operator, args).await.unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let to = Location::parse(&format!("file://{}", dir.path().display())).unwrap();
    let options = BackupOptions::new(bench.url("backup"), to);
    let used = measure(&mut bench.stats, "backup", async {
        let summary = backup::run(&options).await.unwrap();
        assert!(summary.keys >= 5, "{summary:?}");
    })
    .await;
    assert_exactly("backup", &granted(&bench.store, "backup"), &used, &[]);

    // prune: a dry run and a real one over counters past retention.
    let old = (now() - 40 * 86_400) / 86_400 * 86_400;
    run_as(&operator, &["SET", &format!("ec:{old}:flag:blue"), "3"])
        .await
        .unwrap();
    let url = bench.url("prune");
    let used = measure(&mut bench.stats, "prune", async {
        let dry = prune::run(&PruneOptions {
            dry_run: true,
            ..PruneOptions::new(url.clone())
        })
        .await
        .unwrap();
        let real = prune::run(&PruneOptions::new(url.clone())).await.unwrap();
        assert_eq!(dry.expired, 1, "{dry:?}");
        assert_eq!(real.deleted, 1, "{real:?}");
    })
    .await;
    assert_exactly("prune", &granted(&bench.store, "prune"), &used, &[]);

    // exporter: the pods' scripts that log in as the exporter (liveness PING, readiness INFO,
    // preStop ROLE and INFO, start-redis ROLE), then redis_exporter's scrape replayed from its
    // source.
    let port = bench.node.port().to_string();
    let exporter_used = measure(&mut bench.stats, "exporter", async {
        for script in [LIVENESS_REDIS, READINESS_REDIS] {
            let output = bench.store.run_script(
                script,
                &env(&[
                    ("ABSTORE_LOCAL_HOST", LOOPBACK),
                    ("ABSTORE_LOCAL_PORT", &port),
                ]),
            );
            assert!(output.status.success(), "{script}: {}", stderr(&output));
        }
        // preStop on a primary reads its ROLE and INFO replication as the exporter, and with no
        // replica connected stops there (what it does as the replication user is measured with
        // a real switchover below).
        let output = bench.store.run_script(
            PRESTOP_REDIS,
            &env(&[
                ("ABSTORE_LOCAL_HOST", LOOPBACK),
                ("ABSTORE_LOCAL_PORT", &port),
                ("ABSTORE_SENTINEL_HOST", LOOPBACK),
                ("ABSTORE_SENTINEL_PORT", &free_port().unwrap().to_string()),
                ("ABSTORE_PRESTOP_TIMEOUT", "1"),
            ]),
        );
        assert!(output.status.success(), "preStop: {}", stderr(&output));
        assert!(
            stderr(&output).contains("no replica is connected"),
            "preStop: {}",
            stderr(&output)
        );
    })
    .await;
    let scrape_extras: Vec<(String, &str)> = REDIS_EXPORTER_SCRAPE
        .iter()
        .map(|args| {
            let name = if matches!(args[0], "CLIENT" | "CONFIG" | "LATENCY" | "SLOWLOG") {
                format!("{}|{}", args[0], args[1])
            } else {
                args[0].to_owned()
            };
            (
                name.to_lowercase(),
                "redis_exporter's scrape (source, see REDIS_EXPORTER_SCRAPE)",
            )
        })
        .collect();
    let exporter_granted = granted(&bench.store, "exporter");
    // The scripts' commands are observed; the scrape's are replayed with the real grant below.
    let observed_or_scraped: BTreeSet<String> = exporter_used
        .iter()
        .cloned()
        .chain(scrape_extras.iter().map(|(c, _)| c.clone()))
        .collect();
    assert_exactly("exporter", &exporter_granted, &observed_or_scraped, &[]);
    // Back to the rendered grants (the ACL file): the scrape must pass with exactly them, and
    // on a Sentinel-mode node it sends no CLUSTER INFO (not granted here).
    let exporter = bench.store.url("exporter", bench.node.port());
    run_as(&operator, &["ACL", "LOAD"]).await.unwrap();
    assert!(!replay_redis_exporter_scrape(&exporter).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_and_sentinel_roles_are_granted_exactly_what_replicas_sentinels_and_the_prestop_hook_send()
 {
    let store = Rendered::new(FAST_SENTINEL);
    let config = store.redis_conf();
    let primary = RedisServer::start(&config).unwrap();
    let mut stats = BTreeMap::new();
    stats.insert(primary.port(), Stats::open(&store, primary.port()).await);
    let p = stats.get_mut(&primary.port()).unwrap();
    p.widen("replication").await;
    p.reset().await;

    // replication: what a replica sends its primary from the handshake to steady streaming.
    let replica = RedisServer::start_replica_of(&config, &primary).unwrap();
    let replica_url = store.url("operator", replica.port());
    wait_for_sync(&replica_url, SYNC_TIMEOUT).await.unwrap();
    let mut replication_used = stats.get_mut(&primary.port()).unwrap().used().await;

    // sentinel: discovery by start-sentinel.sh (ROLE of the peers), monitoring, the hello
    // channel, and a whole failover (the switchover below) with the reconfiguration it implies.
    stats.insert(replica.port(), Stats::open(&store, replica.port()).await);
    for node in stats.values_mut() {
        node.widen("sentinel").await;
        node.widen("replication").await;
        node.reset().await;
    }
    let peers = vec![primary.addr(), replica.addr()];
    let sentinels: Vec<SentinelServer> = (0..3)
        .map(|i| store.start_sentinel(i, &peers, None, "operator"))
        .collect();
    for sentinel in &sentinels {
        wait_for_sentinels_to_know(sentinel, "shop", 1, 2, DISCOVERY_TIMEOUT)
            .await
            .unwrap();
    }
    run_as(
        &format!(
            "redis://operator:{}@{}",
            store.password("operator"),
            sentinels[0].addr()
        ),
        &["SENTINEL", "FAILOVER", "shop"],
    )
    .await
    .unwrap();
    let old = (LOOPBACK, primary.port());
    let (_, new_port) = wait_for_failover(&sentinels[0], "shop", old, FAILOVER_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(new_port, replica.port());
    // The old primary is reconfigured as a replica of the new one and syncs.
    wait_for_sync(&store.url("operator", primary.port()), FAILOVER_TIMEOUT)
        .await
        .unwrap();
    let mut on_nodes = BTreeSet::new();
    for node in stats.values_mut() {
        on_nodes.extend(node.used().await);
    }
    // Not the sentinels': PSYNC and REPLCONF come from replicas (the old primary re-syncing), and
    // a replica executes its primary's replication stream (SELECT, PING) as the master client,
    // which ACLs do not apply to. PING is also Sentinel's own (every second), so it stays.
    let sentinel_used: BTreeSet<String> = on_nodes
        .into_iter()
        .filter(|c| !["psync", "replconf", "sync", "select"].contains(&c.as_str()))
        .collect();
    assert_exactly(
        "sentinel",
        &granted(&store, "sentinel"),
        &sentinel_used,
        &[(
            "script|kill",
            "Sentinel kills a script that keeps the primary busy (-BUSY) before failing over",
        )],
    );

    // replication, as the preStop hook: a switchover back, run by the hook on the current
    // primary (pause, catch-up, SENTINEL FAILOVER, demotion). Only the replication user is
    // widened now; the sentinels and the hook's exporter calls run with their real grants, so
    // anything on the nodes outside those grants was sent as the replication user.
    for sentinel in &sentinels {
        wait_for_sentinels_to_know(sentinel, "shop", 1, 2, DISCOVERY_TIMEOUT)
            .await
            .unwrap();
    }
    for node in stats.values_mut() {
        run_as(&node.url, &["ACL", "LOAD"]).await.unwrap();
        node.widen("replication").await;
        node.reset().await;
    }
    let new_port_text = new_port.to_string();
    let output = store.run_script(
        PRESTOP_REDIS,
        &env(&[
            ("ABSTORE_LOCAL_HOST", LOOPBACK),
            ("ABSTORE_LOCAL_PORT", &new_port_text),
            ("ABSTORE_ANNOUNCE_HOST", LOOPBACK),
            ("ABSTORE_ANNOUNCE_PORT", &new_port_text),
            ("ABSTORE_SENTINEL_HOST", LOOPBACK),
            ("ABSTORE_SENTINEL_PORT", &sentinels[0].port().to_string()),
        ]),
    );
    assert!(output.status.success(), "preStop: {}", stderr(&output));
    assert!(stderr(&output).contains("demoted"), "{}", stderr(&output));
    wait_for_sync(&store.url("operator", new_port), FAILOVER_TIMEOUT)
        .await
        .unwrap();
    let others: BTreeSet<String> = granted(&store, "sentinel")
        .union(&granted(&store, "exporter"))
        .cloned()
        .chain(["select".to_owned()])
        .collect();
    for node in stats.values_mut() {
        replication_used.extend(node.used().await.difference(&others).cloned());
    }
    assert_exactly(
        "replication",
        &granted(&store, "replication"),
        &replication_used,
        &[],
    );
}

/// Cluster mode (`local up` only for now): a one-shard cluster (a primary and its replica,
/// started from the rendered redis.conf, formed by the operator's cluster heal), the library
/// through a `redis+cluster://` URL, backup from the primary and `--from-replica`, prune, and
/// on both nodes the exporter's probes and redis_exporter's cluster-mode scrape.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_mode_client_roles_are_granted_exactly_what_their_components_send() {
    use abstore_operator::cluster::heal::{ClusterHealTarget, heal_once};
    use abstore_operator::cluster::plan::{ClusterTarget, Member};
    use abstore_operator::heal::{Auth, Endpoint};

    let store = Rendered::local("mode: cluster\ncluster: {shards: 1, replicasPerShard: 1}");
    let primary = RedisServer::start(&store.redis_conf()).unwrap();
    let replica = RedisServer::start(&store.redis_conf()).unwrap();
    let member = |server: &RedisServer, index| Member {
        shard: 0,
        index,
        endpoint: Endpoint::new(LOOPBACK, server.port()),
        bus_port: None,
    };
    let target = ClusterHealTarget {
        cluster: ClusterTarget {
            shards: 1,
            members: vec![member(&primary, 0), member(&replica, 1)],
        },
        operator_auth: Some(Auth {
            username: "operator".to_owned(),
            password: store.password("operator").to_owned(),
        }),
        operator_auth_previous: None,
        tls_ca: None,
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let report = heal_once(&target).await;
        let linked = run_as(
            &store.url("operator", replica.port()),
            &["INFO", "replication"],
        )
        .await
        .ok()
        .and_then(|v| redis::from_redis_value::<String>(v).ok())
        .is_some_and(|info| info.contains("master_link_status:up"));
        let ok = run_as(&store.url("operator", primary.port()), &["CLUSTER", "INFO"])
            .await
            .ok()
            .and_then(|v| redis::from_redis_value::<String>(v).ok())
            .is_some_and(|info| info.contains("cluster_state:ok"));
        // The primary learns by gossip that the other node is its replica.
        let known = run_as(
            &store.url("operator", primary.port()),
            &["CLUSTER", "NODES"],
        )
        .await
        .ok()
        .and_then(|v| redis::from_redis_value::<String>(v).ok())
        .is_some_and(|nodes| nodes.contains(" slave "));
        if report.settled() && linked && ok && known {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "cluster not formed: {report:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let hosts = format!("redis+cluster://{}", primary.addr());
    let url = |user: &str| store.library_url(user, &hosts);
    let mut on_primary = Stats::open(&store, primary.port()).await;
    // The replica's acknowledgements (REPLCONF ACK, as the replication user) are counted on the
    // primary with everything else: not the measured component's.
    let own = |used: BTreeSet<String>| -> BTreeSet<String> {
        used.into_iter().filter(|c| c != "replconf").collect()
    };
    let mut on_replica = Stats::open(&store, replica.port()).await;

    // app: the library's whole surface, plus a refused group's rollback (UNLINK of its flags):
    // the count key of the event below is made a hash first.
    let operator = store.url("operator", primary.port());
    let p = abstore::keys::partition_of("u-wrong");
    let count_key = format!("ec:{}:{{flag:{p}}}:blue", now() / 3600 * 3600);
    run_as(&operator, &["HSET", &count_key, "not", "a counter"])
        .await
        .unwrap();
    let app_url = url("app");
    let used = measure(&mut on_primary, "app", async {
        app_workload(app_url.clone()).await;
        let recorder = Recorder::new(
            Connection::open(&app_url).await.unwrap(),
            RecorderConfig::default(),
        )
        .unwrap();
        let refused = recorder
            .record(&Event::evaluation("flag", "blue", "u-wrong", now()).with_event_id("w-1"))
            .await;
        assert!(refused.is_err(), "{refused:?}");
    })
    .await;
    let used = own(used);
    assert_exactly(
        "app",
        &granted(&store, "app"),
        &used,
        &[(
            "asking",
            "sent only after an ASK redirect, while a slot migrates (no resharding here)",
        )],
    );

    // api: the tracking API binary on the cluster URL, every route, from an empty script cache.
    run_as(&operator, &["SCRIPT", "FLUSH"]).await.unwrap();
    let used = measure(&mut on_primary, "api", api_workload(url("api"), 200)).await;
    assert_exactly(
        "api",
        &granted(&store, "api"),
        &own(used),
        &[(
            "asking",
            "sent only after an ASK redirect, while a slot migrates (no resharding here)",
        )],
    );

    // backup: from the primary, then from the replica (measured there).
    for args in [
        &["SET", "exp:flag", "{}", "EX", "3600"][..],
        &["HSET", "exp:flag:meta", "owner", "growth"],
        &["SADD", "exp:flags", "flag"],
        &["ZADD", "exp:rank", "1", "flag"],
        &["RPUSH", "exp:log", "created"],
    ] {
        run_as(&operator, args).await.unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let to = Location::parse(&format!("file://{}", dir.path().display())).unwrap();
    let options = BackupOptions::new(url("backup"), to.clone());
    let used = measure(&mut on_primary, "backup", async {
        let summary = backup::run(&options).await.unwrap();
        assert!(summary.keys >= 5, "{summary:?}");
    })
    .await;
    let mut pipe = redis::pipe();
    pipe.cmd("WAIT").arg(1).arg(5000);
    let mut waiter = redis::Client::open(operator.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: Value = pipe.query_async(&mut waiter).await.unwrap();
    // CLUSTER SLOTS lists a replica once it has replicated something and said so by gossip.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let slots = run_as(&operator, &["CLUSTER", "SLOTS"]).await.unwrap();
        let listed = matches!(&slots, Value::Array(ranges)
            if ranges.iter().all(|r| matches!(r, Value::Array(f) if f.len() >= 4)));
        if listed {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no replica in CLUSTER SLOTS: {slots:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    on_replica.widen("backup").await;
    let from_replica = BackupOptions {
        from_replica: true,
        ..BackupOptions::new(url("backup"), to)
    };
    let on_replica_used = measure(&mut on_replica, "backup", async {
        let summary = backup::run(&from_replica).await.unwrap();
        assert!(summary.keys >= 5, "{summary:?}");
    })
    .await;
    let used: BTreeSet<String> = own(used).union(&on_replica_used).cloned().collect();
    assert_exactly("backup", &granted(&store, "backup"), &used, &[]);

    // prune: a dry run and a real one.
    let old = (now() - 40 * 86_400) / 86_400 * 86_400;
    run_as(
        &operator,
        &["SET", &format!("ec:{old}:{{flag:3}}:blue"), "3"],
    )
    .await
    .unwrap();
    let prune_url = url("prune");
    let used = measure(&mut on_primary, "prune", async {
        let dry = prune::run(&PruneOptions {
            dry_run: true,
            ..PruneOptions::new(prune_url.clone())
        })
        .await
        .unwrap();
        let real = prune::run(&PruneOptions::new(prune_url.clone()))
            .await
            .unwrap();
        assert_eq!(dry.expired, 1, "{dry:?}");
        assert_eq!(real.deleted, 1, "{real:?}");
    })
    .await;
    let used = own(used);
    assert_exactly("prune", &granted(&store, "prune"), &used, &[]);

    // exporter, in each pod: the probes (liveness PING, readiness INFO) and redis_exporter's
    // scrape, which on a cluster node adds CLUSTER INFO. No ROLE: in cluster mode neither
    // start-redis.sh's discovery nor the preStop hook (Sentinel's hand-over) runs.
    // Prune's UNLINK reaches the replica first: the replica counts what it applies.
    run_as(&operator, &["WAIT", "1", "5000"]).await.unwrap();
    let mut exporter_used = BTreeSet::new();
    for (node, stats) in [(&primary, &mut on_primary), (&replica, &mut on_replica)] {
        let port = node.port().to_string();
        let exporter = store.url("exporter", node.port());
        let used = measure(stats, "exporter", async {
            for script in [LIVENESS_REDIS, READINESS_REDIS] {
                let output = store.run_script(
                    script,
                    &env(&[
                        ("ABSTORE_LOCAL_HOST", LOOPBACK),
                        ("ABSTORE_LOCAL_PORT", &port),
                    ]),
                );
                assert!(output.status.success(), "{script}: {}", stderr(&output));
            }
            assert!(
                replay_redis_exporter_scrape(&exporter).await,
                "INFO ALL of a cluster node without cluster_enabled:1"
            );
        })
        .await;
        // Not the exporter's: the replica's REPLCONF ACK on the primary, and on the replica the
        // primary's stream (its periodic PING, with a SELECT), run as the master client.
        exporter_used.extend(own(used).into_iter().filter(|c| c != "select"));
    }
    assert_exactly(
        "exporter",
        &granted(&store, "exporter"),
        &exporter_used,
        &[],
    );
    // With the rendered grants (the ACL file) the whole scrape passes on every node.
    for node in [&primary, &replica] {
        run_as(&store.url("operator", node.port()), &["ACL", "LOAD"])
            .await
            .unwrap();
        assert!(replay_redis_exporter_scrape(&store.url("exporter", node.port())).await);
    }
}
