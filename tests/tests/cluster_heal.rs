//! The operator's cluster heal (operator/src/cluster) against real redis-server processes in
//! cluster mode: it forms a 2-shard × 1-replica cluster from four strangers, replaces a replica
//! whose disk was lost (new node id: the ghost is forgotten, the newcomer attached), and recovers
//! a shard whose every node lost its disk (the ghost's slots go to the empty replacement).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use abstore_operator::cluster::heal::{ClusterHealTarget, heal_once};
use abstore_operator::cluster::plan::{ClusterTarget, Member};
use abstore_operator::heal::Endpoint;
use abstore_tests::RedisServer;
use redis::AsyncCommands;

/// The cluster lines a cluster-mode pod's redis.conf carries (the rest is the harness's).
const CLUSTER_CONFIG: &str = "cluster-enabled yes\n\
cluster-config-file nodes.conf\n\
cluster-node-timeout 5000\n\
appendonly yes\n";

struct Fixture {
    servers: Vec<RedisServer>,
    target: ClusterHealTarget,
}

/// Four cluster-mode servers that have never met: shard s, index i is server 2s + i.
fn strangers() -> Fixture {
    let servers: Vec<RedisServer> = (0..4)
        .map(|_| RedisServer::start(CLUSTER_CONFIG).unwrap())
        .collect();
    let members = servers
        .iter()
        .enumerate()
        .map(|(n, s)| Member {
            shard: u16::try_from(n / 2).unwrap(),
            index: u16::try_from(n % 2).unwrap(),
            endpoint: Endpoint::new(s.host(), s.port()),
            bus_port: None,
        })
        .collect();
    Fixture {
        servers,
        target: ClusterHealTarget {
            cluster: ClusterTarget { shards: 2, members },
            operator_auth: None,
            operator_auth_previous: None,
            tls_ca: None,
        },
    }
}

/// `CLUSTER <sub>` on `server`, as text.
async fn cluster(server: &RedisServer, sub: &str) -> String {
    let mut con = server.connection().await.unwrap();
    redis::cmd("CLUSTER")
        .arg(sub)
        .query_async(&mut con)
        .await
        .unwrap()
}

async fn cluster_info(server: &RedisServer) -> String {
    cluster(server, "INFO").await
}

async fn cluster_nodes(server: &RedisServer) -> String {
    cluster(server, "NODES").await
}

async fn my_id(server: &RedisServer) -> String {
    cluster(server, "MYID").await
}

/// Runs heal passes until one finds nothing to do and every node reports `cluster_state:ok`
/// with all 16 384 slots assigned and every node seeing all four members; returns the passes'
/// actions, as text.
async fn heal_until_settled(f: &Fixture) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut actions = Vec::new();
    loop {
        let report = heal_once(&f.target).await;
        for (action, error) in &report.applied {
            actions.push(match error {
                None => action.to_string(),
                Some(e) => format!("{action} FAILED {e}"),
            });
        }
        if report.settled() {
            let mut ok = true;
            for s in &f.servers {
                let info = cluster_info(s).await;
                let known = cluster_nodes(s)
                    .await
                    .lines()
                    .filter(|l| !l.contains("fail") && !l.contains("handshake"))
                    .count();
                ok &= info.contains("cluster_state:ok")
                    && info.contains("cluster_slots_assigned:16384")
                    && known == 4;
            }
            if ok {
                return actions;
            }
        }
        if Instant::now() >= deadline {
            let mut views = String::new();
            for s in &f.servers {
                views.push_str(&format!("--- {}\n{}", s.addr(), cluster_nodes(s).await));
            }
            panic!(
                "not settled after 60 s: last pass {report:?}; actions so far {actions:#?}\n{views}"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Kills `server`, deletes its data (nodes.conf and AOF: a lost disk) and starts it again on
/// the same port: the same pod with a new, empty node.
fn lose_disk(server: &mut RedisServer) {
    server.kill9().unwrap();
    let dir = server.data_dir();
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::create_dir_all(&dir).unwrap();
    server.restart().unwrap();
}

/// Writes `key` to the one node that accepts it (the others answer MOVED: the owner of its
/// slot is the only one) and waits until that node's replica has it; returns (owner, replica).
async fn write_through(f: &Fixture, key: &str) -> (usize, usize) {
    let mut owner = None;
    for (n, s) in f.servers.iter().enumerate() {
        let mut c = s.connection().await.unwrap();
        let r: redis::RedisResult<()> = c.set(key, "v").await;
        if r.is_ok() {
            assert!(owner.is_none(), "two nodes accepted {key}");
            owner = Some(n);
        }
    }
    let owner = owner.expect("no primary accepted the key");
    let replica = owner ^ 1;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut c = f.servers[replica].connection().await.unwrap();
        let _: () = redis::cmd("READONLY").query_async(&mut c).await.unwrap();
        let v: Option<String> = c.get(key).await.unwrap();
        if v.is_some() {
            return (owner, replica);
        }
        assert!(Instant::now() < deadline, "{key} never reached the replica");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heal_forms_a_cluster_replaces_a_lost_replica_and_recovers_a_lost_shard() {
    let mut f = strangers();

    // Formation: MEET, the even split, replicas attached to their shard's primary.
    let actions = heal_until_settled(&f).await;
    let text = actions.join("\n");
    assert!(text.contains("CLUSTER MEET"), "{text}");
    assert!(text.contains("ADDSLOTSRANGE 0-8191"), "{text}");
    assert!(text.contains("ADDSLOTSRANGE 8192-16383"), "{text}");
    assert!(!text.contains("FAILED"), "{text}");
    let ids: Vec<String> = {
        let mut ids = Vec::new();
        for s in &f.servers {
            ids.push(my_id(s).await);
        }
        ids
    };
    for (replica, primary) in [(1, 0), (3, 2)] {
        let nodes = cluster_nodes(&f.servers[replica]).await;
        let me = nodes.lines().find(|l| l.contains("myself")).unwrap();
        if !(me.contains("slave") && me.contains(&ids[primary])) {
            for s in &f.servers {
                eprintln!("=== {}\n{}", s.addr(), s.log_tail(40));
            }
        }
        assert!(
            me.contains("slave") && me.contains(&ids[primary]),
            "member {replica} replicates member {primary} ({}): {nodes}\nactions: {text}",
            ids[primary]
        );
    }
    // Data written to each shard reaches that shard's replica.
    let mut shards_written = std::collections::BTreeSet::new();
    for key in ["a", "b", "c", "d", "e"] {
        shards_written.insert(write_through(&f, key).await.0);
    }
    assert_eq!(shards_written.len(), 2, "keys landed on both shards");

    // The library's cluster key layout, asked of the real cluster: an event's dedup flag, count
    // and unique-users keys share one slot, and one flag's partitions spread over both shards.
    {
        use abstore::keys::{
            BucketTimestamp, CounterKey, CounterKind, EventKind, Granularity, Key, PARTITIONS,
            partition_of,
        };
        let mut con = f.servers[0].connection().await.unwrap();
        let bucket = BucketTimestamp::containing(1_700_000_000, Granularity::Hour).unwrap();
        let mut slots_of_flag = std::collections::BTreeSet::new();
        for user in (0..64).map(|i| format!("user-{i}")) {
            let p = partition_of(&user);
            let counter = |kind| {
                CounterKey::evaluation(None, kind, bucket, "checkout", "v")
                    .unwrap()
                    .partitioned(p)
                    .unwrap()
                    .to_string()
            };
            let keys = [
                Key::dedup_partitioned(None, EventKind::Evaluation, &user, "checkout", p)
                    .unwrap()
                    .to_string(),
                counter(CounterKind::EvaluationCount),
                counter(CounterKind::EvaluationUsers),
            ];
            let mut slots = std::collections::BTreeSet::new();
            for key in &keys {
                let slot: u16 = redis::cmd("CLUSTER")
                    .arg("KEYSLOT")
                    .arg(key)
                    .query_async(&mut con)
                    .await
                    .unwrap();
                slots.insert(slot);
            }
            assert_eq!(slots.len(), 1, "{keys:?} in slots {slots:?}");
            slots_of_flag.extend(slots);
        }
        assert!(slots_of_flag.len() > 1 && slots_of_flag.len() <= usize::from(PARTITIONS));
        assert!(
            slots_of_flag.iter().any(|s| *s < 8192) && slots_of_flag.iter().any(|s| *s >= 8192),
            "one flag's partitions reach both shards: {slots_of_flag:?}"
        );
    }

    // A replica loses its disk: it comes back as a new, empty master. Its old id is a ghost.
    lose_disk(&mut f.servers[3]);
    let actions = heal_until_settled(&f).await;
    let text = actions.join("\n");
    assert!(
        text.contains(&format!("CLUSTER FORGET {}", ids[3])),
        "{text}"
    );
    let new_id = my_id(&f.servers[3]).await;
    assert_ne!(new_id, ids[3]);
    assert!(
        text.contains(&format!("REPLICATE {}", ids[2])),
        "the newcomer replicates shard 1's primary: {text}"
    );
    for s in &f.servers {
        assert!(
            !cluster_nodes(s).await.contains(&ids[3]),
            "the ghost is forgotten everywhere"
        );
    }

    // Both nodes of shard 1 lose their disks: its slots' owner is a failed ghost nobody
    // replicates. The slots go to the new, empty shard-1 primary.
    let shard1_ids = [ids[2].clone(), new_id];
    lose_disk(&mut f.servers[2]);
    lose_disk(&mut f.servers[3]);
    let actions = heal_until_settled(&f).await;
    let text = actions.join("\n");
    assert!(
        text.contains("ADDSLOTSRANGE 8192-16383") && text.contains("LostShard"),
        "{text}"
    );
    for ghost in &shard1_ids {
        for s in &f.servers {
            assert!(!cluster_nodes(s).await.contains(ghost.as_str()));
        }
    }
    // Shard 0 kept its data throughout.
    let mut con = f.servers[0].connection().await.unwrap();
    let keys: u64 = redis::cmd("DBSIZE").query_async(&mut con).await.unwrap();
    assert!(keys > 0, "shard 0 still holds its keys");
}

#[test]
fn the_pods_start_script_refreshes_peer_addresses_from_dns_and_announces_the_pod_name() {
    // A pod recreated elsewhere has a new IP; after every pod restarted at once nobody would
    // reach anybody at the addresses nodes.conf remembers. start-redis-cluster.sh rewrites each
    // peer's address to what its recorded hostname resolves to now (`localhost` here), keeps
    // the ones that do not resolve, and writes the runtime config with the announced name.
    use abstore_operator::config::{CLUSTER_CONFIG_FILE, START_REDIS_CLUSTER};
    let store = abstore_tests::Rendered::new("mode: cluster");
    let data = std::path::Path::new(&store.paths.data_dir);
    let id = |n: u8| format!("{n:040}");
    let nodes = [
        format!(
            "{} 10.9.9.9:6379@16379,localhost myself,master - 0 0 1 connected 0-5460 [93->-{}]",
            id(0),
            id(1)
        ),
        format!(
            "{} 10.9.9.8:6379@16379,peer.invalid slave {} 0 0 1 connected",
            id(1),
            id(0)
        ),
        "vars currentEpoch 1 lastVoteEpoch 0".to_owned(),
    ];
    std::fs::write(
        data.join(CLUSTER_CONFIG_FILE),
        format!("{}\n", nodes.join("\n")),
    )
    .unwrap();
    let output = store.run_script(
        START_REDIS_CLUSTER,
        &[
            ("POD_NAME", "shop-redis-4".to_owned()),
            ("ABSTORE_DRY_RUN", "yes".to_owned()),
        ],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let rewritten = std::fs::read_to_string(data.join(CLUSTER_CONFIG_FILE)).unwrap();
    let lines: Vec<&str> = rewritten.lines().collect();
    assert_eq!(
        lines[0],
        nodes[0].replace("10.9.9.9:", "127.0.0.1:"),
        "the resolvable peer moved"
    );
    assert_eq!(lines[1], nodes[1], "an unresolvable peer is kept as it was");
    assert_eq!(lines[2], nodes[2]);
    let runtime = std::fs::read_to_string(data.join("redis.conf")).unwrap();
    assert!(runtime.contains("cluster-enabled yes"), "{runtime}");
    assert!(
        runtime.contains(
            "cluster-announce-hostname shop-redis-4.shop-redis-headless.ab.svc.cluster.local\n"
        ),
        "{runtime}"
    );
    assert!(runtime.contains("cluster-preferred-endpoint-type hostname\n"));
    assert!(runtime.contains("masterauth \""));
}
