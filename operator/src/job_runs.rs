//! The last runs of a store's backup and prune CronJobs, read from the Jobs they created (the
//! Job controller keeps the last few: `successfulJobsHistoryLimit`, `failedJobsHistoryLimit`).
//! The status's `lastBackup`/`lastPrune` and the operator's per-store metrics come from here, so
//! alerts on backup and prune age work without scraping the jobs.

use k8s_openapi::api::batch::v1::Job;
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
        let at = |s: &str| s.parse::<Timestamp>().unwrap();
        assert_eq!(
            runs.last_finished,
            Some((at("2026-11-21T12:00:00Z"), false))
        );
        assert_eq!(runs.last_success, Some(at("2026-11-21T00:00:00Z")));
        assert_eq!(last_runs(&[]), LastRuns::default());
    }
}
