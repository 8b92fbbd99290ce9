//! One release version: `version` of [workspace.package] in Cargo.toml. The crates inherit it, the
//! operator's default jobs image is built from it, scripts/version.sh prints it for the images'
//! label, and the chart's version, the Terraform examples' and chart examples' image tags must
//! equal it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use abstore_operator::crd::{DEFAULT_API_IMAGE, DEFAULT_JOBS_IMAGE};
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
fn the_charts_version_is_the_workspace_version() {
    // The chart is released with the operator (its appVersion, the operator image's tag, is
    // checked by chart.rs's the_chart_installs_the_operator_release_it_was_built_with).
    let chart = chart_yaml("Chart.yaml");
    assert_eq!(
        chart["version"].as_str(),
        Some(VERSION),
        "charts/abstore-operator/Chart.yaml: version must be the workspace version {VERSION} \
         (Cargo.toml [workspace.package] version)"
    );
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
fn the_default_jobs_and_api_images_are_this_release() {
    // The CronJobs of every ABStore run this image unless spec.jobs.image says otherwise.
    assert_eq!(
        DEFAULT_JOBS_IMAGE,
        format!("{REGISTRY}/abstore-jobs:{VERSION}")
    );
    // So does every store's tracking API (spec.api.image).
    assert_eq!(
        DEFAULT_API_IMAGE,
        format!("{REGISTRY}/abstore-api:{VERSION}")
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

/// Every `ghcr.io/abstore/abstore-<image>:<tag>` in a file, with its line number.
fn image_references(text: &str) -> Vec<(usize, String, String)> {
    let prefix = format!("{REGISTRY}/");
    let mut found = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let mut rest = line;
        while let Some(start) = rest.find(&prefix) {
            let reference: String = rest[start + prefix.len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || "-_.:".contains(*c))
                .collect();
            if let Some((image, tag)) = reference.split_once(':') {
                found.push((number + 1, image.to_owned(), tag.to_owned()));
            }
            rest = &rest[start + prefix.len()..];
        }
    }
    found
}

#[test]
fn deployable_files_name_this_releases_images() {
    // The Terraform examples' default jobs image and the chart's examples are copied into real
    // deployments: a stale tag there would run another release's jobs against this one's stores.
    let mut files = Vec::new();
    let mut pending = vec![repo_root().join("terraform"), chart_dir()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                if !name.starts_with('.') {
                    pending.push(path);
                }
            } else if [".tf", ".yaml", ".yml", ".md", ".tpl", ".json"]
                .iter()
                .any(|ext| name.ends_with(ext))
            {
                files.push(path);
            }
        }
    }
    let mut checked = 0;
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (line, image, tag) in image_references(&text) {
            assert_eq!(
                tag,
                VERSION,
                "{}:{line}: {REGISTRY}/{image}:{tag} is not this release ({VERSION})",
                file.display()
            );
            checked += 1;
        }
    }
    // The CRD's default, full.yaml and the three Terraform examples at least.
    assert!(checked >= 5, "only {checked} image references found");
}

#[test]
fn image_references_are_found_with_their_tags() {
    let refs = image_references(
        "default = \"ghcr.io/abstore/abstore-jobs:0.1.0\" # ghcr.io/abstore/abstore-operator:9.9.9",
    );
    assert_eq!(
        refs,
        [
            (1, "abstore-jobs".to_owned(), "0.1.0".to_owned()),
            (1, "abstore-operator".to_owned(), "9.9.9".to_owned())
        ]
    );
}

/// The chart versions a text installs (`oci://…/abstore-operator --version <v>`) and the tags
/// it downloads from (`/abstore/v<v>/`), with their line numbers.
fn install_versions(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    let mut pending_oci = false;
    for (number, line) in text.lines().enumerate() {
        if line.contains("oci://ghcr.io/abstore/charts/abstore-operator") {
            pending_oci = true;
        }
        if pending_oci && let Some((_, after)) = line.split_once("--version ") {
            let version: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || "-.".contains(*c))
                .collect();
            found.push((number + 1, version));
            pending_oci = false;
        }
        if let Some((_, after)) = line.split_once("/abstore/abstore/v") {
            let version: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || "-.".contains(*c))
                .collect();
            found.push((number + 1, version));
        }
    }
    found
}

#[test]
fn the_install_instructions_name_this_release() {
    // README, docs/operator.md and the chart's README tell users to install a released version
    // from the OCI registry: a stale version there installs an older release.
    let mut checked = 0;
    for file in [
        "README.md",
        "docs/operator.md",
        "charts/abstore-operator/README.md",
    ] {
        let text = std::fs::read_to_string(repo_root().join(file)).unwrap();
        for (line, version) in install_versions(&text) {
            assert_eq!(
                version, VERSION,
                "{file}:{line}: installs {version}, not this release ({VERSION})"
            );
            checked += 1;
        }
    }
    assert!(checked >= 5, "only {checked} install versions found");
    assert_eq!(
        install_versions(
            "helm install x oci://ghcr.io/abstore/charts/abstore-operator \\\n  --version 9.9.9\nhttps://raw.githubusercontent.com/abstore/abstore/v1.2.3/charts"
        ),
        [(2, "9.9.9".to_owned()), (3, "1.2.3".to_owned())]
    );
}
