//! Sentinel authentication with real redis-server / redis-sentinel processes started from the
//! operator's rendered configs and scripts: a sentinel refuses anonymous clients and the default
//! user, each role may ask exactly what its job needs (clients look the primary up, the Redis
//! pods' scripts also ask for a failover, sentinels vote and greet each other, the operator
//! administers), and a failover among authenticated sentinels still works, with clients, heal
//! and the +switch-master follower all authenticating.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use abstore::connection::Connection;
use abstore::counters::{Event, Outcome, Recorder, RecorderConfig};
use abstore_operator::build::sentinel_url;
use abstore_operator::credentials::Role;
use abstore_operator::follow::subscribe_switches;
use abstore_operator::heal::{Endpoint, HealTarget, observe};
use abstore_tests::{
    LOOPBACK, RedisServer, Rendered, wait_for_failover, wait_for_sentinels_to_know, wait_for_sync,
};
use redis::Value;

const SYNC_TIMEOUT: Duration = Duration::from_secs(15);
const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(20);
/// down-after 1 s plus the election (~2.3 s here), with room for a slow CI machine.
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(30);
const MASTER: &str = "shop";
const DECLARED_USER: &str = "reporting";
/// The client roles: all of them get the same (lookup-only) rules on the sentinels.
const CLIENTS: [&str; 5] = ["app", "backup", "prune", "exporter", DECLARED_USER];

/// The store every test here renders: fast Sentinel timings and a declared user.
fn rendered() -> Rendered {
    Rendered::new(&format!(
        "sentinel: {{downAfterMilliseconds: 1000, failoverTimeoutMilliseconds: 3000}}\nauth:\n  users:\n  - {{name: {DECLARED_USER}, keys: ['ec:*'], commands: '+@all'}}"
    ))
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

/// Allowed: any answer but NOPERM (a harmless error such as an unknown master name still
/// proves that ACL let the command through: Redis checks permissions before running it).
async fn permitted(url: &str, args: &[&str]) {
    match run(url, args).await {
        Err(e) if e.code() == Some("NOPERM") || e.to_string().contains("NOAUTH") => {
            panic!("{args:?} should be permitted: {e}")
        }
        _ => {}
    }
}

async fn refused(url: &str, args: &[&str]) {
    match run(url, args).await {
        Err(e) if e.code() == Some("NOPERM") => {}
        other => panic!("{args:?} should be refused with NOPERM, got {other:?}"),
    }
}

/// What nobody but the operator may do to a sentinel: change what it monitors, how, or whether
/// it fails over; vote; configure or debug it; manage its users; stop it.
const ADMINISTRATION: &[&[&str]] = &[
    &["SENTINEL", "FAILOVER", MASTER],
    &["SENTINEL", "REMOVE", MASTER],
    &["SENTINEL", "MONITOR", "evil", "10.0.0.66", "6379", "1"],
    &["SENTINEL", "SET", MASTER, "down-after-milliseconds", "1"],
    &["SENTINEL", "RESET", "*"],
    &["SENTINEL", "CONFIG", "SET", "resolve-hostnames", "no"],
    &["SENTINEL", "DEBUG"],
    &["SENTINEL", "FLUSHCONFIG"],
    &["SENTINEL", "SIMULATE-FAILURE", "crash-after-election"],
    &[
        "SENTINEL",
        "IS-MASTER-DOWN-BY-ADDR",
        "127.0.0.1",
        "1",
        "0",
        "*",
    ],
    &["ACL", "SETUSER", "default", "on", "nopass", "+@all"],
    &["CLIENT", "KILL", "TYPE", "normal"],
    &["SHUTDOWN", "NOSAVE"],
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_refuses_anonymous_and_default_users_and_gives_each_role_only_its_job() {
    // Anyone who may SENTINEL REMOVE/MONITOR can send every client to a Redis of their choice.
    let store = rendered();
    let primary = RedisServer::start(&store.redis_conf()).unwrap();
    let sentinel = store.start_sentinel(0, &[primary.addr()], None, "app");
    let port = sentinel.port();
    let anonymous = format!("redis://{LOOPBACK}:{port}");

    // No password: refused before any command.
    for args in [
        &["PING"][..],
        &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER],
    ] {
        match run(&anonymous, args).await {
            Err(e) => assert!(e.to_string().contains("NOAUTH"), "{args:?}: {e}"),
            Ok(v) => panic!("{args:?} answered an anonymous client: {v:?}"),
        }
    }
    // The default user is off, whatever the password.
    for password in ["", "anything", store.password("operator")] {
        let url = format!("redis://default:{password}@{LOOPBACK}:{port}");
        assert!(
            run(&url, &["PING"]).await.is_err(),
            "the default user logged in with {password:?}"
        );
    }
    // A wrong password of a real user.
    assert!(
        run(
            &format!("redis://operator:wrong-password@{LOOPBACK}:{port}"),
            &["PING"]
        )
        .await
        .is_err()
    );

    // Clients: look the primary and the replicas up, follow +switch-master; nothing else.
    for user in CLIENTS {
        let url = store.url(user, port);
        let reply = run(&url, &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER])
            .await
            .unwrap_or_else(|e| panic!("{user}: {e}"));
        assert_eq!(
            reply,
            Value::Array(vec![
                Value::BulkString(LOOPBACK.into()),
                Value::BulkString(primary.port().to_string().into()),
            ]),
            "{user}"
        );
        for args in [
            &["PING"][..],
            &["SENTINEL", "REPLICAS", MASTER],
            &["SENTINEL", "SLAVES", MASTER],
            &["SENTINEL", "SENTINELS", MASTER],
            &["SENTINEL", "MASTER", MASTER],
            &["SENTINEL", "MASTERS"],
            &["CLIENT", "SETNAME", "a-client"],
        ] {
            permitted(&url, args).await;
        }
        for args in ADMINISTRATION {
            refused(&url, args).await;
        }
        refused(&url, &["PUBLISH", "__sentinel__:hello", "x"]).await;
        refused(&url, &["INFO"]).await;
        refused(&url, &["ACL", "LIST"]).await;
    }
    let mut events = redis::Client::open(store.url("app", port))
        .unwrap()
        .get_async_pubsub()
        .await
        .unwrap();
    events.subscribe("+switch-master").await.unwrap();
    let refused_channel = events.subscribe("+sdown").await;
    assert!(
        refused_channel.is_err(),
        "a client may subscribe to other events"
    );

    // The Redis pods' scripts (replication): the lookup and a failover, nothing else.
    let pods = store.url(Role::Replication.username(), port);
    permitted(&pods, &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER]).await;
    permitted(&pods, &["SENTINEL", "FAILOVER", "no-such-master"]).await;
    for args in &ADMINISTRATION[1..] {
        refused(&pods, args).await;
    }
    refused(&pods, &["SENTINEL", "REPLICAS", MASTER]).await;

    // Sentinels among themselves: greet on the hello channel, vote, and the lookup of their
    // own scripts; no failover, no reconfiguration, no other channel.
    let peer = store.url(Role::Sentinel.username(), port);
    permitted(&peer, &["PING"]).await;
    permitted(&peer, &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER]).await;
    permitted(
        &peer,
        &[
            "SENTINEL",
            "IS-MASTER-DOWN-BY-ADDR",
            "127.0.0.1",
            "1",
            "0",
            "*",
        ],
    )
    .await;
    permitted(&peer, &["CLIENT", "SETNAME", "sentinel-peer-cmd"]).await;
    refused(
        &peer,
        &["PUBLISH", "+switch-master", "shop 1.2.3.4 1 5.6.7.8 2"],
    )
    .await;
    for args in ADMINISTRATION
        .iter()
        .filter(|args| args[1] != "IS-MASTER-DOWN-BY-ADDR")
    {
        refused(&peer, args).await;
    }
    refused(&peer, &["SENTINEL", "REPLICAS", MASTER]).await;

    // The operator administers (on a scratch master name, so the store is left alone).
    let operator = store.url(Role::Operator.username(), port);
    for args in [
        &["SENTINEL", "MONITOR", "scratch", LOOPBACK, "1", "1"][..],
        &[
            "SENTINEL",
            "SET",
            "scratch",
            "down-after-milliseconds",
            "2000",
        ],
        &["SENTINEL", "RESET", "scratch"],
        &["SENTINEL", "REMOVE", "scratch"],
        &["SENTINEL", "CONFIG", "GET", "resolve-hostnames"],
        &["SENTINEL", "FAILOVER", "no-such-master"],
        &["INFO", "sentinel"],
        &["ACL", "LIST"],
    ] {
        run(&operator, args)
            .await
            .map(|_| ())
            .or_else(|e| {
                if e.to_string().contains("No such master") {
                    Ok(())
                } else {
                    Err(e)
                }
            })
            .unwrap_or_else(|e| panic!("operator {args:?}: {e}"));
    }

    // Sentinel's CONFIG REWRITE (it rewrote its file on start) keeps the users: a restart from
    // the rewritten file still refuses anonymous clients and knows the app.
    let mut sentinel = sentinel;
    sentinel.restart().unwrap();
    assert!(run(&anonymous, &["PING"]).await.is_err());
    permitted(
        &store.url("app", port),
        &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER],
    )
    .await;
    let rewritten = std::fs::read_to_string(sentinel.config_path()).unwrap();
    assert!(rewritten.contains("aclfile"), "{rewritten}");
    assert!(
        rewritten.contains("sentinel sentinel-user sentinel"),
        "{rewritten}"
    );
}

/// `ACL LOG` entries of a server (as the operator): every command ACL refused.
async fn acl_denials(store: &Rendered, port: u16) -> Vec<String> {
    let reply = run(&store.url("operator", port), &["ACL", "LOG"])
        .await
        .unwrap();
    let Value::Array(entries) = reply else {
        return vec![format!("{reply:?}")];
    };
    entries.iter().map(|e| format!("{e:?}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn authenticated_sentinels_fail_over_and_clients_heal_and_the_follower_keep_up() {
    // Authentication must not cost availability: sentinels greet and vote with the sentinel
    // role, the app follows the failover through them, the operator still observes them.
    let store = rendered();
    let primary = RedisServer::start(&store.redis_conf()).unwrap();
    let mut nodes = vec![primary];
    for _ in 0..2 {
        let replica = RedisServer::start_replica_of(&store.redis_conf(), &nodes[0]).unwrap();
        nodes.push(replica);
    }
    for replica in &nodes[1..] {
        wait_for_sync(&store.url("operator", replica.port()), SYNC_TIMEOUT)
            .await
            .unwrap();
    }
    // The first sentinel finds the primary through the data nodes, the others by asking it (as
    // the sentinel role).
    let peers: Vec<String> = nodes.iter().map(|n| n.addr()).collect();
    let mut sentinels = vec![store.start_sentinel(0, &peers, None, "app")];
    for i in 1..3 {
        let first = sentinels[0].port();
        sentinels.push(store.start_sentinel(i, &peers, Some(first), "app"));
    }
    for sentinel in &sentinels {
        wait_for_sentinels_to_know(sentinel, MASTER, 2, 2, DISCOVERY_TIMEOUT)
            .await
            .unwrap();
    }

    // The app connects with the credentials Secret's Sentinel URL form (`sentinel_username`),
    // the hosts swapped for the loopback sentinels, plus its password file.
    let secret_url = sentinel_url(&store.model, "app");
    let query = secret_url.split_once('?').unwrap().1;
    let hosts: Vec<String> = sentinels.iter().map(|s| s.addr()).collect();
    let url = format!(
        "redis+sentinel://app@{}/{MASTER}?{query}&password_file={}",
        hosts.join(","),
        store.paths.credential_file("app")
    );
    let recorder = Recorder::new(
        Connection::open(&url).await.unwrap(),
        RecorderConfig::default(),
    )
    .unwrap();
    let at = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap();
    let first = recorder
        .record(&Event::evaluation("flag", "blue", "u1", at).with_event_id("e-1"))
        .await;
    assert!(matches!(first, Ok(Outcome::Counted)), "{first:?}");

    // The operator's heal target reaches the sentinels as the operator; without credentials
    // the sentinels refuse it.
    let endpoint = |port: u16| Endpoint::new(LOOPBACK, port);
    let target = HealTarget::for_model(
        &store.model,
        &store.credentials,
        nodes.iter().map(|n| endpoint(n.port())).collect(),
        sentinels.iter().map(|s| endpoint(s.port())).collect(),
        None,
    );
    let seen = observe(&target).await;
    for s in &seen.sentinels {
        let view = s.state.as_ref().unwrap().as_ref().unwrap();
        assert_eq!(view.primary, endpoint(nodes[0].port()), "{}", s.endpoint);
    }
    let anonymous = HealTarget {
        operator_sentinel_auth: None,
        ..target.clone()
    };
    for s in observe(&anonymous).await.sentinels {
        let error = s.state.unwrap_err();
        assert!(error.contains("NOAUTH"), "{error}");
    }

    // The +switch-master follower subscribes as the operator.
    let (events_tx, mut events) = tokio::sync::mpsc::channel(16);
    let follower = tokio::spawn(subscribe_switches(target.clone(), events_tx));

    let old = (LOOPBACK, nodes[0].port());
    nodes[0].kill9().unwrap();
    let (_, new_port) = wait_for_failover(&sentinels[0], MASTER, old, FAILOVER_TIMEOUT)
        .await
        .unwrap();
    assert_ne!(new_port, old.1);
    let switch = tokio::time::timeout(FAILOVER_TIMEOUT, events.recv())
        .await
        .expect("no +switch-master reached the follower")
        .unwrap();
    assert_eq!(switch.to, endpoint(new_port));
    follower.abort();

    // The app follows through the authenticated sentinels.
    let second = recorder
        .record(&Event::evaluation("flag", "blue", "u2", at).with_event_id("e-2"))
        .await;
    assert!(matches!(second, Ok(Outcome::Counted)), "{second:?}");

    // Nothing the sentinels sent each other (or the data nodes) was refused: the sentinel
    // role is enough for a whole failover.
    for sentinel in &sentinels {
        let denials = acl_denials(&store, sentinel.port()).await;
        assert!(
            denials.is_empty(),
            "sentinel {}: {denials:?}",
            sentinel.addr()
        );
    }
    for node in &nodes[1..] {
        let denials = acl_denials(&store, node.port()).await;
        assert!(denials.is_empty(), "node {}: {denials:?}", node.addr());
    }
}
