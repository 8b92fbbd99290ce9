//! A store on the e2e cluster as its users and its Jobs reach it: the app user's access from the
//! store's Secret and writes through `<n>-primary`, the backup and prune Jobs run now from their
//! CronJobs (the jobs image, S3 on this machine reached from pods on the node IP), and the host
//! processes of a pod's containers (the kit's node runs on this machine).

use std::time::Duration;

use serde_json::Value;

use crate::k8s::{Cluster, STORE_READY, poll, store_status};
use crate::local_store::PlainWriter;
use crate::{S3_REGION, S3Server};

/// What an application gets from the store's `<n>-user-app` Secret: the password, the
/// Sentinel URL for the `abstore` library (with a password file) and the `<n>-primary` URL.
#[derive(Debug)]
pub struct AppAccess {
    pub password: String,
    pub sentinel_url: String,
    pub primary_url: String,
    pub master: String,
    _dir: tempfile::TempDir,
}

/// Reads the app user's Secret of `store` (panics when it is missing: the store is not Ready).
pub fn app_access(cluster: &Cluster, ns: &str, store: &str) -> AppAccess {
    user_access(cluster, ns, store, "app")
}

/// Reads the Secret of one of `store`'s users (`app`, `exporter`, …).
pub fn user_access(cluster: &Cluster, ns: &str, store: &str, user: &str) -> AppAccess {
    let secret_name = format!("{store}-user-{user}");
    let json = cluster
        .kubectl(&["get", "secret", &secret_name, "-n", ns, "-o", "json"])
        .unwrap_or_else(|error| panic!("{error}"));
    let secret: Value =
        serde_json::from_str(&json).unwrap_or_else(|error| panic!("secret {secret_name}: {error}"));
    let field = |key: &str| {
        use base64::Engine;
        let encoded = secret["data"][key]
            .as_str()
            .unwrap_or_else(|| panic!("no {key} in secret {secret_name}"));
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap_or_else(|error| panic!("{key} of {secret_name}: {error}"));
        String::from_utf8(bytes).unwrap_or_else(|error| panic!("{key} of {secret_name}: {error}"))
    };
    let password = field("password");
    let dir = tempfile::tempdir().unwrap_or_else(|error| panic!("{error}"));
    let file = dir.path().join("password");
    std::fs::write(&file, &password).unwrap_or_else(|error| panic!("{error}"));
    let sentinel_url = format!("{}&password_file={}", field("sentinel-url"), file.display());
    let primary = field("primary-url");
    let primary_url =
        primary.replacen(&format!("://{user}@"), &format!("://{user}:{password}@"), 1);
    let master = field("sentinel-url")
        .rsplit('/')
        .next()
        .and_then(|tail| tail.split('?').next())
        .unwrap_or_default()
        .to_owned();
    AppAccess {
        password,
        sentinel_url,
        primary_url,
        master,
        _dir: dir,
    }
}

/// A counter key of the schema (the app user may only touch those): `ec:<hour>:<flag>:v`.
pub fn counter_key(flag: &str) -> String {
    let now = chrono::Utc::now().timestamp();
    format!("ec:{}:{flag}:v", now - now % 3600)
}

/// Waits until `more` further increments of `writer` are acknowledged.
pub async fn write_more(writer: &PlainWriter, more: u64, within: Duration) {
    let target = writer.log().await.acked + more;
    poll("the writer to get further", within, || async {
        let log = writer.log().await;
        if log.acked >= target {
            Ok(())
        } else {
            Err(format!(
                "{} acknowledged, {} errors, last: {:?}",
                log.acked,
                log.errors.len(),
                log.errors.last().map(|e| &e.error)
            ))
        }
    })
    .await
    .unwrap_or_else(|error| panic!("{error}"));
}

/// The node's InternalIP: how pods reach services on this machine.
pub fn node_ip(cluster: &Cluster) -> String {
    cluster
        .kubectl(&[
            "get",
            "nodes",
            "-o",
            "jsonpath={.items[0].status.addresses[?(@.type==\"InternalIP\")].address}",
        ])
        .unwrap_or_else(|error| panic!("{error}"))
}

/// Waits until Job `job` completes; panics with its logs when it fails.
pub async fn wait_job(cluster: &Cluster, ns: &str, job: &str) {
    poll(&format!("Job {job} to complete"), STORE_READY, || async {
        let conditions = cluster.kubectl(&[
            "get",
            "job",
            job,
            "-n",
            ns,
            "-o",
            "jsonpath={range .status.conditions[*]}{.type}={.status} {end}",
        ])?;
        if conditions.contains("Complete=True") {
            Ok(())
        } else if conditions.contains("Failed=True") {
            let logs = cluster
                .kubectl(&["logs", &format!("job/{job}"), "-n", ns])
                .unwrap_or_default();
            panic!("Job {job} failed: {conditions}\n{logs}")
        } else {
            Err(format!("conditions: {conditions:?}"))
        }
    })
    .await
    .unwrap_or_else(|error| panic!("{error}"));
}

/// S3 for the backups of a store's pods: SeaweedFS listening on every address of this machine
/// with one bucket, reached from pods on the node IP.
#[derive(Debug)]
pub struct PodS3 {
    pub server: S3Server,
    pub bucket: String,
    /// `http://<node IP>:<port>`.
    pub endpoint: String,
}

impl PodS3 {
    pub async fn start(cluster: &Cluster, bucket: &str) -> PodS3 {
        let server = S3Server::start_for_pods().unwrap_or_else(|error| panic!("{error}"));
        server
            .create_bucket(bucket)
            .await
            .unwrap_or_else(|error| panic!("{error}"));
        let endpoint = format!("http://{}:{}", node_ip(cluster), server.port());
        PodS3 {
            server,
            bucket: bucket.to_owned(),
            endpoint,
        }
    }

    /// Creates Secret `secret` with the S3 credentials in `ns` and returns the ABStore's
    /// `backup:` (YAML at column 0) to `s3://<bucket>/<prefix>`, configured as the full
    /// example does it: credentials from the Secret, endpoint and path style in `env`.
    pub fn backup_spec(&self, cluster: &Cluster, ns: &str, secret: &str, prefix: &str) -> String {
        cluster
            .kubectl(&[
                "create",
                "secret",
                "generic",
                secret,
                "-n",
                ns,
                &format!(
                    "--from-literal=AWS_ACCESS_KEY_ID={}",
                    self.server.access_key()
                ),
                &format!(
                    "--from-literal=AWS_SECRET_ACCESS_KEY={}",
                    self.server.secret_key()
                ),
            ])
            .unwrap_or_else(|error| panic!("{error}"));
        format!(
            "backup:\n  destination: s3://{}/{prefix}\n  credentialsSecretName: {secret}\n  env:\n    - name: AWS_REGION\n      value: {S3_REGION}\n    - name: ABSTORE_S3_ENDPOINT\n      value: {}\n    - name: ABSTORE_S3_PATH_STYLE\n      value: \"true\"\n",
            self.bucket, self.endpoint
        )
    }
}

/// What one run of a store's backup and prune Jobs left behind.
#[derive(Debug)]
pub struct JobsRun {
    /// The store's status once `lastBackup` and `lastPrune` are in it.
    pub status: Value,
    /// The backup's JSON summary line, from the termination message of its pod that succeeded
    /// (a Job may retry after a failed pod).
    pub backup_summary: Value,
    /// From `kubectl create job` to both Jobs complete.
    pub took: Duration,
}

/// Runs the store's backup and prune now, as on-call would: `kubectl create job
/// manual-backup --from=cronjob/<store>-backup` (and `manual-prune` from `<store>-prune`), waits
/// until both complete, then until `lastBackup` and `lastPrune` are in the status.
pub async fn backup_and_prune_now(cluster: &Cluster, ns: &str, store: &str) -> JobsRun {
    let start = std::time::Instant::now();
    let jobs = [("backup", "manual-backup"), ("prune", "manual-prune")];
    for (kind, job) in jobs {
        cluster
            .kubectl(&[
                "create",
                "job",
                job,
                &format!("--from=cronjob/{store}-{kind}"),
                "-n",
                ns,
            ])
            .unwrap_or_else(|error| panic!("{error}"));
    }
    for (_, job) in jobs {
        wait_job(cluster, ns, job).await;
    }
    let took = start.elapsed();
    let status = poll(
        "lastBackup and lastPrune",
        Duration::from_secs(60),
        || async {
            let status = store_status(cluster, ns, store)?;
            if status["lastBackup"].is_string() && status["lastPrune"].is_string() {
                Ok(status)
            } else {
                Err(format!("{status}"))
            }
        },
    )
    .await
    .unwrap_or_else(|error| panic!("{error}"));
    let summary = cluster
        .kubectl(&[
            "get",
            "pods",
            "-n",
            ns,
            "-l",
            "job-name=manual-backup",
            "--field-selector=status.phase=Succeeded",
            "-o",
            "jsonpath={.items[0].status.containerStatuses[0].state.terminated.message}",
        ])
        .unwrap_or_else(|error| panic!("{error}"));
    let backup_summary: Value = serde_json::from_str(&summary)
        .unwrap_or_else(|error| panic!("backup summary {summary:?}: {error}"));
    JobsRun {
        status,
        backup_summary,
        took,
    }
}

/// The host pid of process `comm` in pod `uid`'s containers: the node runs on this machine,
/// so the test sees the container's processes (cgroupfs paths carry the pod UID). `comm` is
/// cut to the kernel's 15 characters (`abstore-operator` reads `abstore-operato`).
pub fn container_pid(uid: &str, comm: &str) -> Option<u32> {
    let comm: String = comm.chars().take(15).collect();
    let underscored = uid.replace('-', "_");
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let name = std::fs::read_to_string(entry.path().join("comm")).ok()?;
            if name.trim() != comm {
                return None;
            }
            let cgroup = std::fs::read_to_string(entry.path().join("cgroup")).ok()?;
            (cgroup.contains(uid) || cgroup.contains(&underscored)).then_some(pid)
        })
}
