//! The GitHub Actions workflows (.github/workflows): linted by actionlint and shellcheck through
//! scripts/lint_workflows.py (which also enforces actions pinned by commit SHA and a top-level
//! `permissions:`), shown to fail on bad workflows, and read for what a release must do: build
//! the three images for amd64 and arm64 from the Dockerfile's targets with SBOM and provenance, sign
//! them and the chart keyless, push the chart to an OCI registry, attach the binaries and the CRD.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use abstore_tests::{INSTALL_COMMAND, PYTHON_ENV, repo_root};
use serde_yaml::Value;

fn workflows() -> Vec<PathBuf> {
    let dir = repo_root().join(".github").join("workflows");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            path.extension()
                .is_some_and(|ext| ext == "yml" || ext == "yaml")
        })
        .collect();
    files.sort();
    files
}

fn lint(files: &[PathBuf]) -> Output {
    let python = std::env::var(PYTHON_ENV).unwrap_or_else(|_| "python3".to_owned());
    Command::new(python)
        .arg(repo_root().join("scripts").join("lint_workflows.py"))
        .args(files)
        .current_dir(repo_root())
        .output()
        .unwrap_or_else(|e| panic!("cannot run scripts/lint_workflows.py: {e} ({INSTALL_COMMAND})"))
}

fn text(output: &Output) -> String {
    format!(
        "exit {:?}\n{}{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn read_yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn workflow(name: &str) -> (String, Value) {
    let path = repo_root().join(".github").join("workflows").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (text, read_yaml(&path))
}

/// Every `run:` script of a job, joined.
fn scripts(job: &Value) -> String {
    job["steps"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|step| step["run"].as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The `with:` of every step of a job that uses `action` (owner/name, any pinned SHA).
fn uses<'a>(job: &'a Value, action: &str) -> Vec<&'a Value> {
    job["steps"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter(|step| {
            step["uses"]
                .as_str()
                .is_some_and(|u| u.split('@').next() == Some(action))
        })
        .map(|step| &step["with"])
        .collect()
}

#[test]
fn the_workflows_pass_actionlint_shellcheck_and_the_pinning_rules() {
    let files = workflows();
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.contains(&"ci.yml".to_owned()) && names.contains(&"release.yml".to_owned()),
        "workflows: {names:?}"
    );
    let output = lint(&files);
    assert!(
        output.status.success(),
        "lint_workflows.py: {}",
        text(&output)
    );
}

#[test]
fn the_lint_fails_a_bad_workflow_naming_each_problem() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yml");
    std::fs::write(
        &bad,
        "on: push\n\
         jobs:\n  \
           build:\n    \
             runs-on: ubuntu-24.04\n    \
             steps:\n      \
               - uses: actions/checkout@v4\n      \
               - run: echo ${{ github.no_such_property }}\n      \
               - run: cd $DIR && ls\n",
    )
    .unwrap();
    let output = lint(std::slice::from_ref(&bad));
    let said = text(&output);
    assert_eq!(output.status.code(), Some(1), "{said}");
    for expected in [
        // actionlint: an expression that cannot be evaluated
        "property \"no_such_property\" is not defined",
        // the pinning rule
        "actions/checkout@v4: not pinned to a commit SHA",
        // the permissions rule
        "no top-level 'permissions:'",
        // shellcheck on the run script: unquoted variable
        "SC2086",
    ] {
        assert!(said.contains(expected), "expected {expected:?} in:\n{said}");
    }
    // A hosted runner label that the linter's release predates is not a finding.
    assert!(!said.contains("ubuntu-24.04\" is unknown"), "{said}");
}

#[test]
fn ci_runs_the_test_command_on_pull_requests_with_read_only_permissions() {
    let (_, ci) = workflow("ci.yml");
    assert!(
        ci["on"].get("pull_request").is_some(),
        "ci.yml must run on pull_request: {:?}",
        ci["on"]
    );
    assert_eq!(ci["permissions"]["contents"].as_str(), Some("read"));
    let test = &ci["jobs"]["test"];
    assert!(
        scripts(test).lines().any(|l| l.trim() == "scripts/test.sh"),
        "ci.yml's test job runs the README's test command"
    );
    // The offline image build needs a Debian bookworm host: the job runs in the Dockerfile's
    // builder image, the same pinned Rust.
    let dockerfile = std::fs::read_to_string(repo_root().join("Dockerfile")).unwrap();
    let image = test["container"]["image"].as_str().unwrap();
    assert!(
        dockerfile.contains(&format!("ARG RUST_IMAGE={image}")),
        "ci.yml's container {image} is the Dockerfile's RUST_IMAGE"
    );
}

#[test]
fn a_tag_releases_signed_multi_arch_images_the_chart_and_the_binaries() {
    let (raw, release) = workflow("release.yml");
    assert_eq!(
        release["on"]["push"]["tags"].as_sequence().unwrap()[0].as_str(),
        Some("v*"),
        "release.yml runs on v* tags"
    );
    assert_eq!(release["permissions"]["contents"].as_str(), Some("read"));
    let jobs = &release["jobs"];

    // The tag must be the workspace version.
    assert!(scripts(&jobs["check"]).contains("scripts/version.sh"));

    // Both architectures on native runners; each builds the Dockerfile's targets.
    let images = &jobs["images"];
    let arches: Vec<&str> = images["strategy"]["matrix"]["include"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|i| i["arch"].as_str().unwrap())
        .collect();
    assert_eq!(arches, ["amd64", "arm64"]);
    assert_eq!(images["permissions"]["packages"].as_str(), Some("write"));
    let builds = uses(images, "docker/build-push-action");
    let targets: Vec<&str> = builds
        .iter()
        .map(|w| w["target"].as_str().unwrap())
        .collect();
    assert_eq!(targets, ["operator", "jobs", "api", "binaries"]);
    let dockerfile = std::fs::read_to_string(repo_root().join("Dockerfile")).unwrap();
    for target in &targets {
        assert!(
            dockerfile
                .lines()
                .any(|l| l.starts_with("FROM ") && l.ends_with(&format!(" AS {target}"))),
            "release.yml builds --target {target}, which the Dockerfile must have"
        );
    }
    for with in &builds[..3] {
        assert_eq!(
            with["sbom"].as_bool(),
            Some(true),
            "SBOM attestation: {with:?}"
        );
        assert_eq!(
            with["provenance"].as_str(),
            Some("mode=max"),
            "provenance: {with:?}"
        );
        let outputs = with["outputs"].as_str().unwrap();
        assert!(
            outputs.contains("push-by-digest=true") && outputs.contains("push=true"),
            "{outputs}"
        );
        assert!(
            with["build-args"].as_str().unwrap().contains("VERSION="),
            "the Dockerfile refuses a build without VERSION"
        );
    }

    // Publishing: multi-arch indexes, cosign keyless (an OIDC token), the chart to OCI.
    let publish = &jobs["publish"];
    assert_eq!(publish["permissions"]["id-token"].as_str(), Some("write"));
    let script = scripts(publish);
    for expected in [
        "docker buildx imagetools create",
        "cosign sign --yes \"$image@$index\"",
        "helm package charts/abstore-operator",
        "oci://ghcr.io/$OWNER/charts",
        "cosign sign --yes \"ghcr.io/$OWNER/charts/abstore-operator@$digest\"",
    ] {
        assert!(
            script.contains(expected),
            "publish job: expected {expected:?}"
        );
    }

    // The GitHub release: the only job that may write the repository's contents.
    let release_job = &jobs["release"];
    assert_eq!(
        release_job["permissions"]["contents"].as_str(),
        Some("write")
    );
    let script = scripts(release_job);
    assert!(script.contains("gh release create") && script.contains("--verify-tag"));
    assert!(script.contains("charts/abstore-operator/crds/abstores.abstore.dev.yaml"));
    assert!(script.contains("SHA256SUMS"));
    for (name, job) in jobs.as_mapping().unwrap() {
        if name.as_str() != Some("release") {
            assert_ne!(
                job["permissions"]["contents"].as_str(),
                Some("write"),
                "job {name:?} must not write the repository"
            );
        }
    }
    // The chart's image and the CRD's jobs image must be this owner's, or the release stops.
    assert!(raw.contains("image.repository is not ghcr.io/$owner/abstore-operator"));
}
