//! The last runs of a store's backup and prune CronJobs, read from the Jobs they created (the
//! Job controller keeps the last few: `successfulJobsHistoryLimit`, `failedJobsHistoryLimit`).
//! The status's `lastBackup`/`lastPrune` and the operator's per-store metrics come from here, so
//! alerts on backup and prune age work without scraping the jobs.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, ListParams};

use crate::model::{COMPONENT_LABEL, INSTANCE_LABEL, MANAGED_BY_LABEL, MANAGER};

/// How a CronJob's runs went, from its Jobs still in the cluster.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LastRuns {
    /// When the newest finished Job finished, and whether it succeeded.
    pub last_finished: Option<(Timestamp, bool)>,
    /// When the newest successful Job finished.
    pub last_success: Option<Timestamp>,
    /// The figures of the newest successful run's summary line (its termination message), while
    /// its pod is still there.
    pub figures: Option<Figures>,
}

/// What a job's summary line says about a successful run (`abstore-jobs` writes the line to the
/// pod's termination message; see jobs/src/summary.rs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Figures {
    /// Keys written (backup) or deleted (prune).
    pub keys: u64,
    /// Bytes written (backup only).
    pub bytes: Option<u64>,
    pub duration_ms: u64,
}

/// The figures of a summary line, when it reports a successful run (`"ok": true`).
pub fn figures(line: &str) -> Option<Figures> {
    let summary: serde_json::Value = serde_json::from_str(line.trim()).ok()?;
    if summary["ok"] != true {
        return None;
    }
    let number = |key: &str| summary[key].as_u64();
    let keys = match summary["command"].as_str()? {
        "backup" => number("keys")?,
        "prune" => number("deleted")?,
        _ => return None,
    };
    Some(Figures {
        keys,
        bytes: number("bytes"),
        duration_ms: number("duration_ms")?,
    })
}

/// The newest successful Job among `jobs`.
pub fn newest_success(jobs: &[Job]) -> Option<&Job> {
    jobs.iter()
        .filter_map(|job| match finished(job) {
            Some((at, true)) => Some((at, job)),
            _ => None,
        })
        .max_by_key(|(at, _)| *at)
        .map(|(_, job)| job)
}

/// The termination message of container `container` in the pods of Job `job`.
pub fn termination_message<'a>(pods: &'a [Pod], container: &str) -> Option<&'a str> {
    pods.iter()
        .filter_map(|pod| pod.status.as_ref()?.container_statuses.as_ref())
        .flatten()
        .filter(|status| status.name == container)
        .find_map(|status| {
            status
                .state
                .as_ref()?
                .terminated
                .as_ref()?
                .message
                .as_deref()
        })
}

/// The pods of Job `job` (Kubernetes labels them `job-name`).
pub async fn pods_of(client: &Client, namespace: &str, job: &str) -> Result<Vec<Pod>, kube::Error> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    Ok(api
        .list(&ListParams::default().labels(&format!("job-name={job}")))
        .await?
        .items)
}

/// The last runs among `jobs` (any order; Jobs still running are ignored).
pub fn last_runs(jobs: &[Job]) -> LastRuns {
    let mut runs = LastRuns::default();
    for job in jobs {
        let Some((finished, succeeded)) = finished(job) else {
            continue;
        };
        if runs
            .last_finished
            .is_none_or(|(newest, _)| finished > newest)
        {
            runs.last_finished = Some((finished, succeeded));
        }
        if succeeded && runs.last_success.is_none_or(|newest| finished > newest) {
            runs.last_success = Some(finished);
        }
    }
    runs
}

/// When a Job finished and whether it succeeded: its `Complete` or `Failed` condition (the
/// condition's time, as `completionTime` is set only on success).
fn finished(job: &Job) -> Option<(Timestamp, bool)> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .filter(|condition| condition.status == "True")
        .find_map(|condition| {
            let succeeded = match condition.type_.as_str() {
                "Complete" => true,
                "Failed" => false,
                _ => return None,
            };
            let at = condition.last_transition_time.as_ref()?.0;
            Some((at, succeeded))
        })
}

/// The Jobs of one of the store's CronJobs (`component`: `backup` or `prune`).
pub async fn list(
    client: &Client,
    namespace: &str,
    store: &str,
    component: &str,
) -> Result<Vec<Job>, kube::Error> {
    let api: Api<Job> = Api::namespaced(client.clone(), namespace);
    let selector = format!(
        "{INSTANCE_LABEL}={store},{COMPONENT_LABEL}={component},{MANAGED_BY_LABEL}={MANAGER}"
    );
    Ok(api
        .list(&ListParams::default().labels(&selector))
        .await?
        .items)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn job(condition: &str, status: &str, at: &str) -> Job {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("j-{at}")},
            "status": {"conditions": [
                {"type": condition, "status": status, "lastTransitionTime": at}
            ]}
        }))
        .unwrap()
    }

    #[test]
    fn figures_come_from_successful_summary_lines_only() {
        let backup = r#"{"command":"backup","ok":true,"keys":120,"bytes":4096,"parts":1,"duration_ms":1500}"#;
        assert_eq!(
            figures(backup),
            Some(Figures {
                keys: 120,
                bytes: Some(4096),
                duration_ms: 1500
            })
        );
        let prune = r#"{"command":"prune","ok":true,"dry_run":false,"expired":7,"deleted":6,"duration_ms":41}"#;
        assert_eq!(figures(prune).map(|f| (f.keys, f.bytes)), Some((6, None)));
        for refused in [
            r#"{"command":"backup","ok":false,"error":"AccessDenied","category":"storage"}"#,
            "not json",
            r#"{"command":"restore","ok":true,"keys":1,"duration_ms":1}"#,
        ] {
            assert_eq!(figures(refused), None, "{refused}");
        }
    }

    #[test]
    fn the_newest_finished_and_the_newest_successful_run_are_found_in_any_order() {
        let jobs = [
            job("Complete", "True", "2026-11-20T00:00:00Z"),
            job("Failed", "True", "2026-11-21T12:00:00Z"),
            job("Complete", "True", "2026-11-21T00:00:00Z"),
            // Still running (no finished condition) and a condition that is not true.
            serde_json::from_value(serde_json::json!({"metadata": {"name": "running"}})).unwrap(),
            job("Complete", "False", "2026-11-22T00:00:00Z"),
        ];
        let runs = last_runs(&jobs);
        assert_eq!(
            newest_success(&jobs).and_then(|j| j.metadata.name.as_deref()),
            Some("j-2026-11-21T00:00:00Z")
        );
        let at = |s: &str| s.parse::<Timestamp>().unwrap();
        assert_eq!(
            runs.last_finished,
            Some((at("2026-11-21T12:00:00Z"), false))
        );
        assert_eq!(runs.last_success, Some(at("2026-11-21T00:00:00Z")));
        assert_eq!(last_runs(&[]), LastRuns::default());
    }
}
