//! The whole keyspace of a server read with plain commands, independently of the code under
//! test, and the comparison the backup round-trip tests make: same keys, types, values
//! (collections in a canonical order), absolute expiries and HyperLogLog counts.
//! Assertion helpers: they panic with the key at fault, as test code does.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use futures::StreamExt;
use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;

/// How far a restored expiry may differ from the original (PXAT is exact; this only absorbs
/// the clock reading of keys set with a relative TTL).
pub const EXPIRY_TOLERANCE_MS: i64 = 1000;

/// One key as read back.
#[derive(Debug, Clone, PartialEq)]
pub struct KeySnapshot {
    /// `TYPE`: string, hash, set, list or zset.
    pub kind: String,
    /// The value; hash pairs and set members sorted.
    pub value: Vec<Vec<u8>>,
    /// `PEXPIRETIME`: -1 without expiry.
    pub expire_at_ms: i64,
}

/// Every key of the server by name.
pub type Keyspace = BTreeMap<Vec<u8>, KeySnapshot>;

/// Reads every key (SCAN, TYPE, the typed read, PEXPIRETIME).
pub async fn snapshot(conn: &mut MultiplexedConnection) -> Keyspace {
    let mut keys: Vec<Vec<u8>> = Vec::new();
    let mut iter: redis::AsyncIter<Vec<u8>> = conn.scan().await.unwrap();
    while let Some(key) = iter.next().await {
        keys.push(key.unwrap());
    }
    drop(iter);
    let mut out = BTreeMap::new();
    for key in keys {
        let kind: String = redis::cmd("TYPE")
            .arg(&key)
            .query_async(conn)
            .await
            .unwrap();
        let mut value: Vec<Vec<u8>> = match kind.as_str() {
            "string" => vec![conn.get(&key).await.unwrap()],
            "hash" => conn.hgetall::<_, Vec<Vec<u8>>>(&key).await.unwrap(),
            "set" => conn.smembers(&key).await.unwrap(),
            "list" => conn.lrange(&key, 0, -1).await.unwrap(),
            "zset" => conn.zrange_withscores(&key, 0, -1).await.unwrap(),
            other => panic!("unexpected type {other}"),
        };
        match kind.as_str() {
            "hash" => {
                let mut pairs: Vec<Vec<Vec<u8>>> = value.chunks(2).map(<[_]>::to_vec).collect();
                pairs.sort();
                value = pairs.concat();
            }
            "set" => value.sort(),
            _ => {}
        }
        let expire_at_ms: i64 = redis::cmd("PEXPIRETIME")
            .arg(&key)
            .query_async(conn)
            .await
            .unwrap();
        out.insert(
            key,
            KeySnapshot {
                kind,
                value,
                expire_at_ms,
            },
        );
    }
    out
}

/// Panics naming the first key whose presence, type, value or expiry differs.
pub fn assert_same_keyspace(left: &Keyspace, right: &Keyspace) {
    assert_eq!(
        left.keys().collect::<Vec<_>>(),
        right.keys().collect::<Vec<_>>(),
        "key sets differ"
    );
    for (key, a) in left {
        let b = &right[key];
        let name = String::from_utf8_lossy(key);
        assert_eq!(a.kind, b.kind, "type of {name}");
        assert!(a.value == b.value, "value of {name} differs");
        match (a.expire_at_ms, b.expire_at_ms) {
            (-1, -1) => {}
            (x, y) => assert!(
                x > 0 && y > 0 && (x - y).abs() <= EXPIRY_TOLERANCE_MS,
                "expiry of {name}: {x} vs {y}"
            ),
        }
    }
}

/// Panics naming the first `uc:` key whose PFCOUNT differs between the two servers.
pub async fn assert_same_unique_counts(
    keyspace: &Keyspace,
    left: &mut MultiplexedConnection,
    right: &mut MultiplexedConnection,
) {
    for key in keyspace.keys().filter(|k| k.starts_with(b"uc:")) {
        let a: u64 = left.pfcount(key).await.unwrap();
        let b: u64 = right.pfcount(key).await.unwrap();
        assert_eq!(a, b, "PFCOUNT of {}", String::from_utf8_lossy(key));
    }
}
