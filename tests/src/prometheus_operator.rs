//! Prometheus Operator objects (ServiceMonitor, PodMonitor, PrometheusRule) validated against the
//! schemas of the Prometheus Operator's CRDs: `node scripts/prometheus-operator/validate.mjs`,
//! which uses the npm package kubernetes-models generates from the upstream CRDs (installed by
//! scripts/install-test-deps.sh). The same check the API server makes when the CRDs are
//! installed, without a cluster.

use std::io::Write;
use std::process::{Command, Stdio};

use serde::Deserialize;

use crate::python::repo_root;

/// The validator script, relative to the repository root.
const SCRIPT: &str = "scripts/prometheus-operator/validate.mjs";

/// Why validation could not run.
#[derive(Debug, thiserror::Error)]
pub enum PrometheusOperatorError {
    #[error("cannot run node {SCRIPT} (run scripts/install-test-deps.sh): {0}")]
    Spawn(#[source] std::io::Error),
    #[error(
        "node {SCRIPT} failed (exit code {code:?}; run scripts/install-test-deps.sh): {stderr}"
    )]
    Failed { code: Option<i32>, stderr: String },
    #[error("node {SCRIPT} printed no JSON answer ({source}): {stdout}")]
    Output {
        source: serde_json::Error,
        stdout: String,
    },
}

/// One object's verdict.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct MonitoringVerdict {
    pub kind: String,
    pub name: String,
    pub valid: bool,
    pub error: Option<String>,
}

/// Validates `objects` (each a whole object: apiVersion, kind, metadata, spec).
pub fn validate_prometheus_operator_objects(
    objects: &[serde_json::Value],
) -> Result<Vec<MonitoringVerdict>, PrometheusOperatorError> {
    let root = repo_root();
    let mut child = Command::new("node")
        .arg(root.join(SCRIPT))
        .current_dir(&root)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(PrometheusOperatorError::Spawn)?;
    let input = serde_json::to_vec(objects).unwrap_or_default();
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(&input)
            .map_err(PrometheusOperatorError::Spawn)?;
    }
    let output = child
        .wait_with_output()
        .map_err(PrometheusOperatorError::Spawn)?;
    if !output.status.success() {
        return Err(PrometheusOperatorError::Failed {
            code: output.status.code(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    serde_json::from_slice(&output.stdout).map_err(|source| PrometheusOperatorError::Output {
        source,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
    })
}
