//! One release version: `version` of [workspace.package] in Cargo.toml. The crates inherit it, the
//! operator's default jobs image is built from it, scripts/version.sh prints it for the images'
//! label, and the chart's version and appVersion (the operator image's tag) must equal it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use abstore_operator::crd::DEFAULT_JOBS_IMAGE;
use abstore_tests::{chart_dir, repo_root};

const VERSION: &str = env!("CARGO_PKG_VERSION");
const REGISTRY: &str = "ghcr.io/abstore";

fn chart_yaml(file: &str) -> serde_yaml::Value {
    let path = chart_dir().join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_charts_version_and_app_version_are_the_workspace_version() {
    // appVersion is the operator image's default tag: a chart released with another version
    // would install an image that was never built for it.
    let chart = chart_yaml("Chart.yaml");
    for field in ["version", "appVersion"] {
        assert_eq!(
            chart[field].as_str(),
            Some(VERSION),
            "charts/abstore-operator/Chart.yaml: {field} must be the workspace version {VERSION} \
             (Cargo.toml [workspace.package] version)"
        );
    }
}

#[test]
fn the_chart_pulls_the_operator_image_at_app_version() {
    let values = chart_yaml("values.yaml");
    assert_eq!(
        values["image"]["repository"].as_str(),
        Some(format!("{REGISTRY}/abstore-operator").as_str()),
        "charts/abstore-operator/values.yaml: image.repository"
    );
    assert_eq!(
        values["image"]["tag"].as_str(),
        Some(""),
        "charts/abstore-operator/values.yaml: image.tag must stay empty (= appVersion)"
    );
}

#[test]
fn the_default_jobs_image_is_this_release() {
    // The CronJobs of every ABStore run this image unless spec.jobs.image says otherwise.
    assert_eq!(
        DEFAULT_JOBS_IMAGE,
        format!("{REGISTRY}/abstore-jobs:{VERSION}")
    );
}

#[test]
fn scripts_version_sh_prints_the_workspace_version() {
    // scripts/build-images.sh labels the images with it; the Dockerfile refuses another VERSION.
    let output = Command::new(repo_root().join("scripts/version.sh"))
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        format!("{VERSION}\n")
    );
}
