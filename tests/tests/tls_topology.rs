//! A TLS store (`spec.tls.enabled`) run by `abstore-operator local up` with real redis-server and
//! redis-sentinel processes: three data nodes and three sentinels that serve TLS only, with the
//! certificates `local up` generates. The application writes through `rediss+sentinel://`; a
//! `kill -9` of the primary is failed over by the sentinels (which can only talk TLS to the data
//! nodes and to each other: every plaintext port is closed), the client follows, no WAIT-
//! acknowledged event is lost, the killed node rejoins as a replica; plaintext and clients that
//! trust another CA are refused on data and sentinel ports; the backup and prune jobs work with
//! the CA file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use abstore::connection::Connection;
use abstore::counters::{Event, Outcome, Recorder, RecorderConfig, WaitForReplicas};
use abstore::keys::Granularity;
use abstore::reads::{Metric, Reader};
use abstore_operator::heal::{Decision, NodeRole};
use abstore_operator::local::{self, Layout, Supervisor};
use abstore_tests::TestCertificates;
use abstore_tests::local_store::KillOnDrop;
use redis::{
    ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisConnectionInfo, TlsCertificates,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

const STORE: &str = "\
apiVersion: abstore.dev/v1alpha1
kind: ABStore
metadata:
  name: tls-test
spec:
  redis:
    replicas: 3
  sentinel:
    replicas: 3
    downAfterMilliseconds: 1000
    failoverTimeoutMilliseconds: 3000
  tls:
    enabled: true
    secretName: tls-test-tls
";
/// Longest any single convergence may take before the test fails.
const CONVERGE: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(100);
/// How long a refused connection may take to be closed by the server.
const REFUSAL: Duration = Duration::from_secs(5);
const FLAG: &str = "tls-flag";
/// Events acknowledged before the kill, and after the new primary took over.
const WARM_UP_ACKS: usize = 100;
const AFTER_FAILOVER_ACKS: usize = 50;

fn kill9(pid: u32) {
    let status = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

/// What a client got from a port: a Redis reply over an established session, or nothing.
#[derive(Debug)]
enum Session {
    /// The server answered (`PONG`, or an error reply such as NOAUTH: a session all the same).
    Answered(String),
    /// No session: the TLS handshake failed, the connection was closed or reset.
    Refused(String),
}

/// A client of `port` over TLS trusting `ca` (PEM), as `user` when given.
fn tls_client(port: u16, ca: &[u8], user: Option<(&str, &str)>) -> redis::Client {
    abstore::crypto::install_default_provider();
    let addr = ConnectionAddr::TcpTls {
        host: local::LOOPBACK.to_owned(),
        port,
        insecure: false,
        tls_params: None,
    };
    let mut settings = RedisConnectionInfo::default();
    if let Some((name, password)) = user {
        settings = settings.set_username(name).set_password(password);
    }
    let info: ConnectionInfo = addr
        .into_connection_info()
        .unwrap()
        .set_redis_settings(settings);
    redis::Client::build_with_tls(
        info,
        TlsCertificates {
            client_tls: None,
            root_cert: Some(ca.to_vec()),
        },
    )
    .unwrap()
}

/// `PING` over TLS trusting `ca` (PEM), as `user` when given.
async fn tls_ping(port: u16, ca: &[u8], user: Option<(&str, &str)>) -> Session {
    let client = tls_client(port, ca, user);
    let connected = tokio::time::timeout(REFUSAL, client.get_multiplexed_async_connection()).await;
    let mut conn = match connected {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => return Session::Refused(e.to_string()),
        Err(_) => return Session::Refused("timed out".to_owned()),
    };
    match redis::cmd("PING").query_async::<String>(&mut conn).await {
        Ok(reply) => Session::Answered(reply),
        Err(e) if e.is_io_error() || e.is_connection_dropped() => Session::Refused(e.to_string()),
        Err(e) => Session::Answered(e.to_string()),
    }
}

/// The flags a sentinel (asked over TLS) has for the other sentinels and for the replicas, e.g.
/// `sentinel` and `slave`; `disconnected` when its own link to that instance is down.
async fn sentinel_links(
    port: u16,
    ca: &[u8],
    master: &str,
    app: (&str, &str),
) -> Result<Vec<String>, String> {
    let mut conn = tls_client(port, ca, Some(app))
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| e.to_string())?;
    let mut flags = Vec::new();
    for what in ["SENTINELS", "REPLICAS"] {
        let entries: Vec<Vec<String>> = redis::cmd("SENTINEL")
            .arg(what)
            .arg(master)
            .query_async(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        for fields in entries {
            let at = fields.iter().position(|f| f == "flags").ok_or("no flags")?;
            flags.push(fields.get(at + 1).cloned().unwrap_or_default());
        }
    }
    Ok(flags)
}

/// `PING` in plaintext on a raw socket: what comes back until the server closes (or the wait
/// ends).
async fn plaintext_ping(port: u16) -> Session {
    let mut stream = match tokio::net::TcpStream::connect((local::LOOPBACK, port)).await {
        Ok(stream) => stream,
        Err(e) => return Session::Refused(format!("connect: {e}")),
    };
    if let Err(e) = stream.write_all(b"PING\r\n").await {
        return Session::Refused(format!("write: {e}"));
    }
    let mut received = Vec::new();
    let read = tokio::time::timeout(REFUSAL, stream.read_to_end(&mut received)).await;
    let text = String::from_utf8_lossy(&received).into_owned();
    match read {
        _ if text.contains("PONG") => Session::Answered(text),
        Ok(Ok(_)) => Session::Refused(format!("closed after {} bytes", received.len())),
        Ok(Err(e)) => Session::Refused(format!("read: {e}")),
        // Open and silent: not a refusal, and no Redis session either; report it as answered so
        // the assertion shows it.
        Err(_) => Session::Answered(format!("still open after {REFUSAL:?}: {text:?}")),
    }
}

/// Records one event per round trip, each its own variation (so each is checked on its own),
/// with an event id (a resend after a lost reply is not counted twice) and `WAIT 1`.
#[derive(Default)]
struct WriteLog {
    /// Events applied and acknowledged by at least one replica (`WAIT 1` ≥ 1).
    replicated: Vec<(usize, Instant)>,
    /// Every event sent.
    sent: usize,
    errors: Vec<String>,
}

fn spawn_writer(
    recorder: Recorder,
    at: i64,
    stop: Arc<std::sync::atomic::AtomicBool>,
    log: Arc<Mutex<WriteLog>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut i = 0;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let event = Event::evaluation(FLAG, &variation(i), &format!("user-{i}"), at)
                .with_event_id(format!("tls-{i}"));
            let result = recorder.record_batch(&[event]).await;
            {
                let mut log = log.lock().unwrap();
                log.sent = i + 1;
                match result {
                    Ok(batch) => match batch.outcomes.first() {
                        Some(Ok(Outcome::Counted | Outcome::Duplicate))
                            if batch.replicas_acknowledged.unwrap_or(0) >= 1 =>
                        {
                            log.replicated.push((i, Instant::now()));
                        }
                        Some(Ok(_)) => {}
                        Some(Err(e)) => log.errors.push(e.to_string()),
                        None => log.errors.push("no outcome".to_owned()),
                    },
                    Err(e) => log.errors.push(e.to_string()),
                }
            }
            i += 1;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
}

fn variation(i: usize) -> String {
    format!("e{i}")
}

async fn eventually<T>(
    supervisor: &mut Supervisor,
    what: &str,
    mut check: impl FnMut(&Supervisor, &abstore_operator::heal::Report) -> Option<T>,
) -> T {
    let deadline = Instant::now() + CONVERGE;
    loop {
        let report = supervisor.heal_pass().await.unwrap();
        if let Some(done) = check(supervisor, &report) {
            return done;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {CONVERGE:?}: {report:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_store_from_local_up_fails_over_over_tls_and_refuses_plaintext_and_foreign_cas() {
    let work = tempfile::tempdir().unwrap();
    let spec = work.path().join("store.yaml");
    std::fs::write(&spec, STORE).unwrap();
    let dir = work.path().join("store");
    let _cleanup = KillOnDrop(dir.clone());
    let started = Instant::now();
    let mut supervisor = Supervisor::up(&spec, &dir).await.unwrap();
    let layout: Layout = supervisor.layout().clone();
    let state = supervisor.state().clone();
    println!(
        "local up (certificates, 6 processes, bootstrap) took {:?}",
        started.elapsed()
    );

    // The certificates local up generated, the way a cert-manager Secret lays them out.
    let ca = std::fs::read(layout.tls_ca_file()).unwrap();
    let key_mode = std::fs::metadata(layout.tls_key_file()).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&key_mode.permissions()) & 0o077,
        0
    );
    assert!(state.tls);
    let app_url = local::app_url(&layout, &state);
    assert!(
        app_url.starts_with("rediss+sentinel://app@127.0.0.1:")
            && app_url.contains(&format!("ca_file={}", layout.tls_ca_file().display())),
        "{app_url}"
    );
    let status = local::status(&layout).await.unwrap();
    assert_eq!(status.url, app_url);
    assert!(
        status.nodes.iter().all(|n| n.running && n.error.is_none()),
        "heal reaches every node over TLS: {status:?}"
    );
    let tls = status.tls.as_ref().unwrap();
    assert!(tls.server_certificate_expires.is_some(), "{tls:?}");

    // Every port answers TLS with the store's CA (the control for the refusals below) ...
    let app_password = std::fs::read_to_string(layout.credential_file("app")).unwrap();
    // PING as the exporter, as the liveness probe does (the app role has no PING).
    let exporter_password = std::fs::read_to_string(layout.credential_file("exporter")).unwrap();
    let pinger = Some(("exporter", exporter_password.trim()));
    let data_ports: Vec<u16> = state.nodes.iter().map(|n| n.port).collect();
    let sentinel_ports: Vec<u16> = state.sentinels.iter().map(|s| s.port).collect();
    for &port in &data_ports {
        let session = tls_ping(port, &ca, pinger).await;
        assert!(
            matches!(&session, Session::Answered(r) if r == "PONG"),
            "data {port}: {session:?}"
        );
    }
    for &port in &sentinel_ports {
        let session = tls_ping(port, &ca, None).await;
        assert!(
            matches!(session, Session::Answered(_)),
            "sentinel {port}: {session:?}"
        );
    }
    // ... and nothing else: plaintext gets no session on any data or sentinel port (they are
    // the only listeners; `port 0` closed the plaintext ones), so sentinels reach the data nodes
    // and each other over TLS or not at all ...
    for &port in data_ports.iter().chain(&sentinel_ports) {
        let session = plaintext_ping(port).await;
        assert!(
            matches!(session, Session::Refused(_)),
            "plaintext to {port}: {session:?}"
        );
    }
    // ... and a client that trusts another CA fails the handshake, on both kinds of port.
    let other = tempfile::tempdir().unwrap();
    let other_ca =
        std::fs::read(TestCertificates::generate(other.path()).unwrap().ca_file).unwrap();
    for &port in data_ports.iter().chain(&sentinel_ports) {
        match tls_ping(port, &other_ca, pinger).await {
            Session::Refused(e) => assert!(
                e.to_lowercase().contains("certificate") || e.contains("UnknownIssuer"),
                "port {port}: refused, but not for the certificate: {e}"
            ),
            answered => panic!("port {port} accepted a client trusting another CA: {answered:?}"),
        }
    }
    let foreign_ca_file = other.path().join("ca.crt");
    let foreign = format!(
        "rediss+sentinel://app@127.0.0.1:{}/{}?ca_file={}&password_file={}&failover_timeout_ms=1000",
        sentinel_ports[0],
        state.master_name,
        foreign_ca_file.display(),
        layout.credential_file("app").display()
    );
    assert!(
        Connection::open(&foreign).await.is_err(),
        "the abstore client connected trusting another CA"
    );

    // Before the primary dies: replicas in sync and every sentinel knows the replicas and the
    // other sentinels (hello messages through the data nodes, over TLS), or there is no quorum.
    eventually(&mut supervisor, "ready for a failover", |_, report| {
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
        (synced && discovered).then_some(())
    })
    .await;
    // Each sentinel's own links to the other sentinels and to the replicas are up. With only TLS
    // ports open these links are TLS: the proof that Sentinel talks TLS to Sentinel and to Redis
    // (hellos alone travel through the data nodes; votes need the direct links).
    let deadline = Instant::now() + CONVERGE;
    for &port in &sentinel_ports {
        loop {
            // As a client role: sentinels refuse anonymous connections.
            let links =
                sentinel_links(port, &ca, &state.master_name, ("app", app_password.trim())).await;
            let healthy = links.as_ref().is_ok_and(|flags| {
                flags.len() == 4 && flags.iter().all(|f| f == "sentinel" || f == "slave")
            });
            if healthy {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "sentinel {port} links: {links:?}"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    // The application records through rediss+sentinel:// with the CA file.
    let at = chrono::Utc::now().timestamp();
    let conn = Connection::open(&format!("{app_url}&failover_timeout_ms=20000"))
        .await
        .unwrap();
    let recorder = Recorder::new(
        conn.clone(),
        RecorderConfig {
            wait_for_replicas: Some(WaitForReplicas {
                replicas: 1,
                timeout: Duration::from_millis(500),
            }),
            ..RecorderConfig::default()
        },
    )
    .unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let log: Arc<Mutex<WriteLog>> = Arc::default();
    let writer = spawn_writer(recorder, at, stop.clone(), log.clone());
    let acked = || log.lock().unwrap().replicated.len();
    eventually(&mut supervisor, "the writer warming up", |_, _| {
        (acked() >= WARM_UP_ACKS).then_some(())
    })
    .await;

    // kill -9 the primary: the sentinels agree on it being down and elect a new one over their
    // TLS ports; the killed node comes back as a replica of the new primary.
    let old_primary = supervisor.state().primary.clone().unwrap();
    let old = supervisor
        .state()
        .nodes
        .iter()
        .find(|n| format!("{}:{}", local::LOOPBACK, n.port) == old_primary)
        .cloned()
        .unwrap();
    kill9(old.pid.unwrap());
    let killed = Instant::now();
    let new_primary = eventually(
        &mut supervisor,
        "failover and rejoin",
        |supervisor, report| {
            let all_up = supervisor
                .state()
                .nodes
                .iter()
                .all(|n| n.pid.is_some_and(alive));
            match (&report.decision, &report.primary) {
                (Decision::Elected { .. }, Some(p)) if p.to_string() != old_primary && all_up => {
                    Some(p.to_string())
                }
                _ => None,
            }
        },
    )
    .await;
    let failover = killed.elapsed();
    let rejoined = eventually(
        &mut supervisor,
        "the killed node a synced replica",
        |_, report| {
            let node = report
                .observation
                .nodes
                .iter()
                .find(|n| n.endpoint.port == old.port)?;
            match &node.state.as_ref().ok()?.role {
                NodeRole::Replica {
                    primary,
                    link_up: true,
                } if primary.to_string() == new_primary => Some(killed.elapsed()),
                _ => None,
            }
        },
    )
    .await;
    // The client followed by itself: WAIT-acknowledged writes on the new primary.
    let target = acked() + AFTER_FAILOVER_ACKS;
    eventually(&mut supervisor, "writes after the failover", |_, _| {
        (acked() >= target).then_some(())
    })
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.await.unwrap();
    let log = std::mem::take(&mut *log.lock().unwrap());
    let first_after = log
        .replicated
        .iter()
        .find(|(_, t)| *t > killed + Duration::from_millis(500))
        .map(|(_, t)| t.duration_since(killed));

    // Every WAIT-acknowledged event is there exactly once; none is counted twice.
    let reader = Reader::new(conn, None, Granularity::Hour);
    let variations: Vec<String> = (0..log.sent).map(variation).collect();
    let names: Vec<&str> = variations.iter().map(String::as_str).collect();
    let point = reader
        .hour(&Metric::Evaluations, FLAG, &names, at)
        .await
        .unwrap();
    let replicated: BTreeSet<usize> = log.replicated.iter().map(|(i, _)| *i).collect();
    let lost: Vec<usize> = replicated
        .iter()
        .copied()
        .filter(|i| point.variations[&variation(*i)].count != 1)
        .collect();
    let doubled: Vec<&String> = point
        .variations
        .iter()
        .filter(|(_, stats)| stats.count > 1)
        .map(|(name, _)| name)
        .collect();
    println!(
        "TLS failover: new primary {new_primary} {} ms after kill -9 (first acknowledged write \
         {:?} after), killed node a synced replica at {} ms; {} events sent, {} WAIT-acknowledged, \
         {} errors reported to the writer",
        failover.as_millis(),
        first_after,
        rejoined.as_millis(),
        log.sent,
        replicated.len(),
        log.errors.len()
    );
    assert!(lost.is_empty(), "WAIT-acknowledged events lost: {lost:?}");
    assert!(doubled.is_empty(), "events counted twice: {doubled:?}");
    assert!(
        log.errors.is_empty(),
        "the client did not ride through the failover: {:?}",
        log.errors
    );

    // The scheduled backup and prune jobs, run now: rediss+sentinel:// URLs with the CA file.
    supervisor.set_jobs_binary(Path::new(env!("CARGO_BIN_EXE_abstore-jobs-cli")));
    assert!(supervisor.run_job_now("backup"));
    assert!(supervisor.run_job_now("prune"));
    let runs = eventually(
        &mut supervisor,
        "the backup and prune jobs",
        |supervisor, _| {
            let jobs = &supervisor.state().jobs;
            Some((jobs.get("backup")?.clone(), jobs.get("prune")?.clone()))
        },
    )
    .await;
    for run in [&runs.0, &runs.1] {
        assert!(run.ok, "{run:?}");
    }
    let backup: serde_json::Value =
        serde_json::from_str(runs.0.summary.as_deref().unwrap()).unwrap();
    assert!(
        backup["keys"].as_u64().unwrap() >= replicated.len() as u64,
        "{backup}"
    );
    let prune: serde_json::Value =
        serde_json::from_str(runs.1.summary.as_deref().unwrap()).unwrap();
    assert!(
        prune["redis"]
            .as_str()
            .unwrap()
            .starts_with("rediss+sentinel://prune@"),
        "{prune}"
    );
    assert!(prune["scanned"].as_u64().unwrap() > 0, "{prune}");
    assert_eq!(prune["deleted"], 0, "nothing is past retention: {prune}");

    supervisor.stop().await.unwrap();
}
