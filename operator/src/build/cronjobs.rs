//! The backup and prune CronJobs: `abstore-jobs` run on the spec's schedules, each with only
//! its own role's password (mounted as a file), reaching Redis through Sentinel.

use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, JobSpec, JobTemplateSpec};
use k8s_openapi::api::core::v1::{
    Container, EnvFromSource, PodSpec, PodTemplateSpec, SecretEnvSource, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::meta::object_meta;
use super::pod::{
    JOBS_UID, container_security_context, empty_dir, mount, pod_security_context, resources,
    secret_volume, writable_mount,
};
use super::volumes::tls_secret;
use super::{BACKUP_COMPONENT, PRUNE_COMPONENT, cluster_url, sentinel_url};
use crate::config::TLS_CA_FILE;
use crate::credentials::{PASSWORD_KEY, Role, credentials_secret_name};
use crate::model::Model;

/// The jobs binary in the jobs image.
pub const JOBS_BINARY: &str = "abstore-jobs";
/// Where a job pod finds its role's password file.
pub const JOBS_CREDENTIALS_DIR: &str = "/var/run/abstore/credentials";
/// Where a job pod finds the CA certificate when TLS is enabled.
pub const JOBS_TLS_DIR: &str = "/var/run/abstore/tls";
/// Scratch space of job pods (the root filesystem is read-only).
pub const JOBS_TMP_DIR: &str = "/tmp";
/// Finished jobs kept for inspection, per outcome.
pub const JOBS_HISTORY_LIMIT: i32 = 3;
/// A run that could not start within this many seconds of its time is skipped: a backup or
/// prune hours late would overlap the next one.
pub const STARTING_DEADLINE_SECONDS: i64 = 3600;
/// Retries of a failed run (each a fresh pod, so the failed pod's logs stay).
pub const BACKOFF_LIMIT: i32 = 2;
/// Cron schedules are UTC, as the CRD documents, whatever the controller manager's zone.
pub const SCHEDULE_TIME_ZONE: &str = "Etc/UTC";

const CREDENTIALS_VOLUME: &str = "credentials";
const TLS_VOLUME: &str = "tls";
const TMP_VOLUME: &str = "tmp";

/// A job to build: what it runs and as whom.
struct JobKind<'a> {
    component: &'static str,
    schedule: &'a str,
    suspend: bool,
    active_deadline_seconds: i64,
    /// The role's credentials Secret.
    credentials_secret: String,
    args: Vec<String>,
}

/// The backup CronJob (only when a destination is set) and the prune CronJob (when retention
/// is enabled), each running as its built-in role.
pub(crate) fn cron_jobs(model: &Model) -> Vec<CronJob> {
    let backup_user = Role::Backup.username();
    let prune_user = Role::Prune.username();
    let mut jobs = Vec::new();
    let backup = &model.spec.backup;
    if let Some(destination) = &backup.destination {
        let mut args = vec![
            "backup".to_owned(),
            "--redis".to_owned(),
            job_url(model, backup_user),
            "--to".to_owned(),
            destination.clone(),
        ];
        for pattern in &backup.key_patterns {
            args.extend(["--match".to_owned(), pattern.clone()]);
        }
        if backup.from_replica {
            args.push("--from-replica".to_owned());
        }
        let kind = JobKind {
            component: BACKUP_COMPONENT,
            schedule: &backup.schedule,
            // Disabled keeps the CronJob (and its history) but stops new runs.
            suspend: !backup.enabled,
            active_deadline_seconds: backup.active_deadline_seconds,
            credentials_secret: credentials_secret_name(model, backup_user),
            args,
        };
        jobs.push(cron_job(model, kind));
    }
    let retention = &model.spec.retention;
    if retention.enabled {
        let kind = JobKind {
            component: PRUNE_COMPONENT,
            schedule: &retention.schedule,
            suspend: false,
            active_deadline_seconds: retention.active_deadline_seconds,
            credentials_secret: credentials_secret_name(model, prune_user),
            args: vec![
                "prune".to_owned(),
                "--redis".to_owned(),
                job_url(model, prune_user),
                "--retention-days".to_owned(),
                retention.days.to_string(),
            ],
        };
        jobs.push(cron_job(model, kind));
    }
    jobs
}

/// The Sentinel URL a job connects with: its user (on the sentinels too), the password from the
/// mounted file, and the CA when TLS is on.
pub(crate) fn job_url(model: &Model, user: &str) -> String {
    // In cluster mode the cluster URL (every shard's primary, or a replica of each with
    // `--from-replica`).
    let mut url = if model.cluster().is_some() {
        format!(
            "{}?password_file={JOBS_CREDENTIALS_DIR}/{PASSWORD_KEY}",
            cluster_url(model, user)
        )
    } else {
        format!(
            "{}&password_file={JOBS_CREDENTIALS_DIR}/{PASSWORD_KEY}",
            sentinel_url(model, user)
        )
    };
    if model.spec.tls.enabled {
        url.push_str(&format!("&ca_file={JOBS_TLS_DIR}/{TLS_CA_FILE}"));
    }
    url
}

fn cron_job(model: &Model, kind: JobKind<'_>) -> CronJob {
    let labels = model.labels(kind.component);
    let is_backup = kind.component == BACKUP_COMPONENT;
    let backup = &model.spec.backup;

    let mut volumes: Vec<Volume> = vec![
        secret_volume(
            CREDENTIALS_VOLUME,
            kind.credentials_secret,
            &[(PASSWORD_KEY, PASSWORD_KEY)],
        ),
        empty_dir(TMP_VOLUME, false),
    ];
    let mut mounts: Vec<VolumeMount> = vec![
        mount(CREDENTIALS_VOLUME, JOBS_CREDENTIALS_DIR),
        writable_mount(TMP_VOLUME, JOBS_TMP_DIR),
    ];
    if let Some(secret) = tls_secret(model) {
        volumes.push(secret_volume(
            TLS_VOLUME,
            secret,
            &[(TLS_CA_FILE, TLS_CA_FILE)],
        ));
        mounts.push(mount(TLS_VOLUME, JOBS_TLS_DIR));
    }

    let container = Container {
        name: kind.component.to_owned(),
        image: Some(model.spec.jobs.image.clone()),
        command: Some(vec![JOBS_BINARY.to_owned()]),
        args: Some(kind.args),
        env: (is_backup && !backup.env.is_empty()).then(|| backup.env.clone()),
        env_from: backup
            .credentials_secret_name
            .as_ref()
            .filter(|_| is_backup)
            .map(|secret| {
                vec![EnvFromSource {
                    secret_ref: Some(SecretEnvSource {
                        name: secret.clone(),
                        optional: None,
                    }),
                    ..EnvFromSource::default()
                }]
            }),
        resources: Some(resources(
            model.spec.jobs.resources.as_ref(),
            "100m",
            Quantity("128Mi".to_owned()),
        )),
        security_context: Some(container_security_context()),
        volume_mounts: Some(mounts),
        // The jobs write a JSON summary to the termination message; if they die before that,
        // the log tail explains why.
        termination_message_policy: Some("FallbackToLogsOnError".to_owned()),
        ..Container::default()
    };

    let service_account = backup.service_account_name.clone().filter(|_| is_backup);
    let pod = PodSpec {
        // Workload identity (IRSA, GKE) injects its own token; without a ServiceAccount
        // the job needs no Kubernetes API access at all.
        automount_service_account_token: Some(service_account.is_some()),
        service_account_name: service_account,
        containers: vec![container],
        restart_policy: Some("Never".to_owned()),
        security_context: Some(pod_security_context(JOBS_UID)),
        volumes: Some(volumes),
        ..PodSpec::default()
    };

    CronJob {
        metadata: object_meta(model, model.child_name(kind.component), kind.component),
        spec: Some(CronJobSpec {
            schedule: kind.schedule.to_owned(),
            time_zone: Some(SCHEDULE_TIME_ZONE.to_owned()),
            suspend: Some(kind.suspend),
            // A slow backup must not be joined by the next one on the same Redis.
            concurrency_policy: Some("Forbid".to_owned()),
            starting_deadline_seconds: Some(STARTING_DEADLINE_SECONDS),
            successful_jobs_history_limit: Some(JOBS_HISTORY_LIMIT),
            failed_jobs_history_limit: Some(JOBS_HISTORY_LIMIT),
            job_template: JobTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels.clone()),
                    ..ObjectMeta::default()
                }),
                spec: Some(JobSpec {
                    active_deadline_seconds: Some(kind.active_deadline_seconds),
                    backoff_limit: Some(BACKOFF_LIMIT),
                    template: PodTemplateSpec {
                        // The NetworkPolicy lets pods with these labels in.
                        metadata: Some(ObjectMeta {
                            labels: Some(labels),
                            ..ObjectMeta::default()
                        }),
                        spec: Some(pod),
                    },
                    ..JobSpec::default()
                }),
            },
        }),
        status: None,
    }
}
