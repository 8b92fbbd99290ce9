//! Test harness: real `redis-server` and `redis-sentinel` processes on free loopback ports, each
//! in its own temporary directory and killed on drop, plus polling waits for replication and
//! failover states. Configs are given as text, so operator-rendered configs run unchanged.

pub mod api;
mod error;
mod gcs;
pub mod k8s;
pub mod k8s_helm;
pub mod k8s_store;
pub mod keyspace;
pub mod lamed;
pub mod local_store;
pub mod measure;
pub mod metric_names;
mod process;
mod prometheus_operator;
mod python;
mod registry;
mod rendered;
mod s3;
mod sentinel;
mod server;
mod tls;
mod topology;
mod wait;

pub use error::HarnessError;
pub use gcs::{FAKE_GCS_SERVER_BIN_ENV, GCS_PORT, GcsServer};
pub use process::{LOOPBACK, START_ATTEMPTS, START_TIMEOUT, ServerProcess, free_port};
pub use prometheus_operator::{
    MonitoringVerdict, PrometheusOperatorError, validate_prometheus_operator_objects,
};
pub use python::{
    ChartRef, INSTALL_COMMAND, LintMessage, LintReport, ManifestReport, OLDEST_KUBERNETES,
    ObjectVerdict, PROMETHEUS_OPERATOR_KINDS, PYTHON_ENV, PythonToolError, ReleaseInfo,
    RenderedChart, Verdict, chart_dir, chart_refusal, helm_install, helm_push, helm_uninstall,
    lint_chart, newest_kubernetes_version, read_yaml_as_kubectl_does, render_chart,
    render_chart_or_panic, repo_root, validate_custom_resources, validate_manifests,
};
pub use registry::OciRegistry;
pub use rendered::Rendered;
pub use s3::{S3_REGION, S3_START_TIMEOUT, S3Server};
pub use sentinel::SentinelServer;
pub use server::RedisServer;
pub use tls::TestCertificates;
pub use topology::{DEFAULT_MASTER_NAME, Topology, TopologyOptions};
pub use wait::{
    COMMAND_TIMEOUT, Role, parse_info, query_role, wait_for_failover, wait_for_replication_offset,
    wait_for_role, wait_for_sentinels_to_know, wait_for_sync,
};
