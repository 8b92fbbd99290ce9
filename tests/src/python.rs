//! The Python tools the chart and manifest tests use, run through `scripts/k8s_tools.py`: the
//! real Helm SDK (render, lint, Helm's YAML reader; install and uninstall on the e2e cluster),
//! `kubernetes-validate` (Kubernetes' own JSON schemas, strict) and `jsonschema` (custom
//! resources against a CRD). A missing package is an error naming the package and the install
//! command, never a skipped test.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Deserialize;
use serde_json::Value;

/// The command that installs every tool these functions need.
pub const INSTALL_COMMAND: &str = "scripts/install-test-deps.sh";
/// Environment variable naming the Python interpreter; `python3` when unset.
pub const PYTHON_ENV: &str = "ABSTORE_PYTHON";
/// The oldest Kubernetes ABStore supports; manifests must be valid there.
pub const OLDEST_KUBERNETES: &str = "1.28.0";
/// Kinds of the Prometheus Operator, which Kubernetes' schemas do not know: `validate_manifests`
/// reports them as unknown kinds, and callers decide to accept them.
pub const PROMETHEUS_OPERATOR_KINDS: [&str; 2] = ["ServiceMonitor", "PrometheusRule"];

/// Exit code of k8s_tools.py when a Python package is missing.
const EXIT_MISSING_PACKAGE: i32 = 3;
/// The script, relative to the repository root.
const TOOL: &str = "scripts/k8s_tools.py";

/// Why a tool could not give an answer (as opposed to an answer that says "invalid").
#[derive(Debug, thiserror::Error)]
pub enum PythonToolError {
    #[error(
        "cannot start {python:?} (set {PYTHON_ENV} to another interpreter): {source}; run {INSTALL_COMMAND}"
    )]
    Spawn {
        python: OsString,
        source: std::io::Error,
    },
    #[error("{message}")]
    MissingPackage { message: String },
    #[error("{TOOL} {command} failed (exit code {code:?}): {stderr}")]
    Failed {
        command: String,
        code: Option<i32>,
        stderr: String,
    },
    #[error("{TOOL} {command} printed no JSON answer ({source}): {stdout}")]
    Output {
        command: String,
        source: serde_json::Error,
        stdout: String,
    },
    #[error("writing a temporary file for {TOOL}: {0}")]
    TempFile(#[source] std::io::Error),
}

/// The repository root (the workspace of this crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

/// `charts/abstore-operator`.
pub fn chart_dir() -> PathBuf {
    repo_root().join("charts").join("abstore-operator")
}

/// Runs `k8s_tools.py <args>` with `stdin`, and decodes its JSON answer into `T`.
fn run_tool<T: serde::de::DeserializeOwned>(
    args: &[OsString],
    stdin: Option<&str>,
) -> Result<T, PythonToolError> {
    let python = std::env::var_os(PYTHON_ENV).unwrap_or_else(|| OsString::from("python3"));
    run_tool_with(&python, &[], args, stdin)
}

/// `run_tool` with an explicit interpreter and interpreter options.
fn run_tool_with<T: serde::de::DeserializeOwned>(
    python: &OsString,
    python_options: &[&str],
    args: &[OsString],
    stdin: Option<&str>,
) -> Result<T, PythonToolError> {
    let command = args
        .first()
        .map(|a| a.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut child = Command::new(python)
        .args(python_options)
        .arg(repo_root().join(TOOL))
        .args(args)
        .current_dir(repo_root())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| PythonToolError::Spawn {
            python: python.clone(),
            source,
        })?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // The tool reads all of stdin before it writes, so this cannot deadlock on its output.
        pipe.write_all(text.as_bytes())
            .map_err(|source| PythonToolError::Spawn {
                python: python.clone(),
                source,
            })?;
    }
    let output = child
        .wait_with_output()
        .map_err(|source| PythonToolError::Spawn {
            python: python.clone(),
            source,
        })?;
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    match output.status.code() {
        Some(0) => {}
        Some(EXIT_MISSING_PACKAGE) => {
            return Err(PythonToolError::MissingPackage { message: stderr });
        }
        code => {
            return Err(PythonToolError::Failed {
                command,
                code,
                stderr,
            });
        }
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(&stdout).map_err(|source| PythonToolError::Output {
        command,
        source,
        stdout: stdout.chars().take(2000).collect(),
    })
}

/// What a validator said about one object.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// The object matches its schema.
    Valid,
    /// The object does not match its schema; `errors` say where.
    Invalid,
    /// The validator has no schema for this kind.
    UnknownKind,
}

/// One object of a multi-document YAML and its verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectVerdict {
    /// `<apiVersion>/<kind> <name>`.
    pub object: String,
    pub verdict: Verdict,
    /// Why it is invalid (or which schemas were missing).
    pub errors: Vec<String>,
}

impl ObjectVerdict {
    /// The object's kind (the word before the name).
    pub fn kind(&self) -> &str {
        self.object
            .split_whitespace()
            .next()
            .and_then(|api_kind| api_kind.rsplit('/').next())
            .unwrap_or("")
    }
}

#[derive(Debug, Deserialize)]
struct RawVerdict {
    object: String,
    status: Verdict,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    errors: Vec<String>,
}

impl From<RawVerdict> for ObjectVerdict {
    fn from(raw: RawVerdict) -> Self {
        let mut errors = raw.errors;
        errors.extend(raw.error);
        ObjectVerdict {
            object: raw.object,
            verdict: raw.status,
            errors,
        }
    }
}

/// The result of validating manifests against one Kubernetes version's schemas.
#[derive(Clone, Debug)]
pub struct ManifestReport {
    /// The version asked for.
    pub kubernetes_version: String,
    /// Every version kubernetes-validate ships, oldest first.
    pub shipped_versions: Vec<String>,
    /// One entry per document, in input order.
    pub objects: Vec<ObjectVerdict>,
}

impl ManifestReport {
    /// Everything wrong, one line each: invalid objects, and unknown kinds other than
    /// `custom_kinds` (kinds from CRDs, which Kubernetes' schemas cannot know).
    pub fn problems(&self, custom_kinds: &[&str]) -> Vec<String> {
        self.objects
            .iter()
            .filter(|o| match o.verdict {
                Verdict::Valid => false,
                Verdict::Invalid => true,
                Verdict::UnknownKind => !custom_kinds.contains(&o.kind()),
            })
            .map(|o| format!("{} ({:?}): {}", o.object, o.verdict, o.errors.join("; ")))
            .collect()
    }

    /// Panics with every problem when there is one (see `problems`); for tests.
    pub fn assert_valid(&self, custom_kinds: &[&str]) {
        let problems = self.problems(custom_kinds);
        assert!(
            problems.is_empty(),
            "manifests are not valid for Kubernetes {} (strict):\n  {}",
            self.kubernetes_version,
            problems.join("\n  ")
        );
        assert!(
            !self.objects.is_empty(),
            "no objects were validated: the YAML held no documents"
        );
    }
}

#[derive(Debug, Deserialize)]
struct RawManifestReport {
    kubernetes_version: String,
    versions: Vec<String>,
    results: Vec<RawVerdict>,
}

/// Validates multi-document YAML (for example `abstore-operator render` output or a rendered
/// chart) against the Kubernetes `kubernetes_version` JSON schemas that `kubernetes-validate`
/// ships, in strict mode (unknown fields are errors). YAML is read as kubectl reads it (YAML
/// 1.1 scalars: an unquoted `no` is a boolean). Fails when that version is not shipped.
pub fn validate_manifests(
    yaml: &str,
    kubernetes_version: &str,
) -> Result<ManifestReport, PythonToolError> {
    let raw: RawManifestReport = run_tool(
        &[
            "kube-validate".into(),
            "--strict".into(),
            "--kubernetes-version".into(),
            kubernetes_version.into(),
            "-".into(),
        ],
        Some(yaml),
    )?;
    Ok(ManifestReport {
        kubernetes_version: raw.kubernetes_version,
        shipped_versions: raw.versions,
        objects: raw.results.into_iter().map(Into::into).collect(),
    })
}

/// The newest Kubernetes version whose schemas `kubernetes-validate` ships.
pub fn newest_kubernetes_version() -> Result<String, PythonToolError> {
    let report = validate_manifests("", OLDEST_KUBERNETES)?;
    Ok(report
        .shipped_versions
        .last()
        .cloned()
        .unwrap_or_else(|| OLDEST_KUBERNETES.to_owned()))
}

/// Validates custom resources (multi-document YAML) against the openAPIV3Schema of the CRD in
/// `crd_file`, as the API server would: structural, unknown fields refused.
pub fn validate_custom_resources(
    crd_file: &Path,
    yaml: &str,
) -> Result<Vec<ObjectVerdict>, PythonToolError> {
    #[derive(Deserialize)]
    struct Raw {
        results: Vec<RawVerdict>,
    }
    let raw: Raw = run_tool(
        &[
            "crd-validate".into(),
            "--crd".into(),
            crd_file.into(),
            "-".into(),
        ],
        Some(yaml),
    )?;
    Ok(raw.results.into_iter().map(Into::into).collect())
}

/// A chart rendered by the Helm SDK.
#[derive(Clone, Debug, Deserialize)]
pub struct RenderedChart {
    /// Rendered templates by path (`abstore-operator/templates/deployment.yaml`), without
    /// NOTES.txt and empty ones.
    pub manifests: BTreeMap<String, String>,
    /// The rendered NOTES.txt.
    pub notes: String,
    /// The files of `crds/`, as Helm would install them.
    pub crds: Vec<String>,
}

impl RenderedChart {
    /// Every rendered manifest as one multi-document YAML.
    pub fn yaml(&self) -> String {
        self.manifests
            .values()
            .map(|m| m.trim())
            .collect::<Vec<_>>()
            .join("\n---\n")
    }

    /// Every rendered object, parsed.
    pub fn objects(&self) -> Result<Vec<Value>, serde_yaml::Error> {
        let mut objects = Vec::new();
        for document in serde_yaml::Deserializer::from_str(&self.yaml()) {
            let value = Value::deserialize(document)?;
            if !value.is_null() {
                objects.push(value);
            }
        }
        Ok(objects)
    }
}

#[derive(Debug, Deserialize)]
struct RawRender {
    ok: bool,
    #[serde(default)]
    error: Option<String>,
    #[serde(flatten)]
    rendered: Option<RenderedChart>,
}

fn values_file(values: Option<&str>) -> Result<Option<tempfile::NamedTempFile>, PythonToolError> {
    values
        .map(|yaml| {
            let mut file = tempfile::Builder::new()
                .prefix("values-")
                .suffix(".yaml")
                .tempfile()
                .map_err(PythonToolError::TempFile)?;
            file.write_all(yaml.as_bytes())
                .map_err(PythonToolError::TempFile)?;
            Ok(file)
        })
        .transpose()
}

/// Renders `chart` with the Helm SDK as `helm install --dry-run` would (values schema checked,
/// template `fail`s honoured), with `values` (YAML) over the chart's defaults. `Ok(Err(message))`
/// is Helm refusing the values or failing a template.
pub fn render_chart(
    chart: &Path,
    values: Option<&str>,
    release: &str,
    namespace: &str,
) -> Result<Result<RenderedChart, String>, PythonToolError> {
    let file = values_file(values)?;
    let mut args: Vec<OsString> = vec![
        "helm-render".into(),
        chart.into(),
        "--name".into(),
        release.into(),
        "--namespace".into(),
        namespace.into(),
    ];
    if let Some(file) = &file {
        args.extend(["--values".into(), file.path().into()]);
    }
    let raw: RawRender = run_tool(&args, None)?;
    Ok(match (raw.ok, raw.rendered) {
        (true, Some(rendered)) => Ok(rendered),
        _ => Err(raw
            .error
            .unwrap_or_else(|| "render failed without a message".to_owned())),
    })
}

/// One finding of `helm lint`.
#[derive(Clone, Debug, Deserialize)]
pub struct LintMessage {
    /// `info`, `warning` or `error`.
    pub severity: String,
    pub path: String,
    pub message: String,
}

/// What `helm lint` said.
#[derive(Clone, Debug, Deserialize)]
pub struct LintReport {
    /// No errors (and, when strict, no warnings).
    pub ok: bool,
    #[serde(default)]
    pub messages: Vec<LintMessage>,
    #[serde(default)]
    pub errors: Vec<String>,
    #[serde(default)]
    pub error: Option<String>,
}

/// `helm lint [--strict] [--kube-version V] -f values` through the Helm SDK.
pub fn lint_chart(
    chart: &Path,
    values: Option<&str>,
    strict: bool,
    kube_version: Option<&str>,
) -> Result<LintReport, PythonToolError> {
    let file = values_file(values)?;
    let mut args: Vec<OsString> = vec!["helm-lint".into(), chart.into()];
    if strict {
        args.push("--strict".into());
    }
    if let Some(version) = kube_version {
        args.extend(["--kube-version".into(), version.into()]);
    }
    if let Some(file) = &file {
        args.extend(["--values".into(), file.path().into()]);
    }
    run_tool(&args, None)
}

/// Reads a YAML mapping with Helm's parser (sigs.k8s.io/yaml, as Helm and kubectl read files:
/// YAML 1.1 scalars, so an unquoted `no` is `false`), returned as JSON.
pub fn read_yaml_as_kubectl_does(yaml: &str) -> Result<Result<Value, String>, PythonToolError> {
    #[derive(Deserialize)]
    struct Raw {
        ok: bool,
        #[serde(default)]
        value: Option<Value>,
        #[serde(default)]
        error: Option<String>,
    }
    let raw: Raw = run_tool(&["helm-yaml".into(), "-".into()], Some(yaml))?;
    Ok(match (raw.ok, raw.value) {
        (true, Some(value)) => Ok(value),
        _ => Err(raw.error.unwrap_or_default()),
    })
}

/// A release as the Helm SDK reports it after `install` or `uninstall`.
#[derive(Clone, Debug, Deserialize)]
pub struct ReleaseInfo {
    pub name: String,
    pub namespace: String,
    pub revision: u64,
    /// `deployed` after an install, `uninstalled` after an uninstall.
    pub status: String,
    pub chart_name: String,
    pub chart_version: String,
    pub app_version: String,
    /// The rendered templates the release applied (install only).
    #[serde(default)]
    pub manifest: String,
}

#[derive(Debug, Deserialize)]
struct RawRelease {
    ok: bool,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    release: Option<ReleaseInfo>,
}

impl RawRelease {
    fn into_result(self, action: &str) -> Result<ReleaseInfo, String> {
        match (self.ok, self.release) {
            (true, Some(release)) => Ok(release),
            _ => Err(self
                .error
                .unwrap_or_else(|| format!("helm {action} answered without a release"))),
        }
    }
}

/// Which chart `helm install` installs: a directory, or a version in an OCI registry.
#[derive(Clone, Debug)]
pub enum ChartRef {
    /// A chart directory (`charts/abstore-operator`).
    Dir(PathBuf),
    /// `oci://<registry>/<path>/<chart>` at `version`; `plain_http` for a registry without TLS.
    Oci {
        reference: String,
        version: String,
        plain_http: bool,
    },
}

impl ChartRef {
    fn args(&self) -> Vec<OsString> {
        match self {
            ChartRef::Dir(dir) => vec![dir.into()],
            ChartRef::Oci {
                reference,
                version,
                plain_http,
            } => {
                let mut args: Vec<OsString> =
                    vec![reference.into(), "--version".into(), version.into()];
                if *plain_http {
                    args.push("--plain-http".into());
                }
                args
            }
        }
    }
}

/// `helm package <chart_dir>` then `helm push <package> <remote>` (`oci://<registry>/<path>`)
/// through the Helm SDK, as the release workflow publishes the chart. `Ok(Ok(package file
/// name))`, or `Ok(Err(message))` when Helm refused or failed.
pub fn helm_push(
    chart_dir: &Path,
    remote: &str,
    plain_http: bool,
) -> Result<Result<String, String>, PythonToolError> {
    let mut args: Vec<OsString> = vec!["helm-push".into(), chart_dir.into(), remote.into()];
    if plain_http {
        args.push("--plain-http".into());
    }
    #[derive(Deserialize)]
    struct Raw {
        ok: bool,
        #[serde(default)]
        error: Option<String>,
        #[serde(default)]
        package: Option<String>,
    }
    let raw: Raw = run_tool(&args, None)?;
    Ok(match (raw.ok, raw.package) {
        (true, Some(package)) => Ok(package),
        _ => Err(raw
            .error
            .unwrap_or_else(|| "helm push answered without a package".to_owned())),
    })
}

/// `helm install <release> <chart> -n <namespace> -f values --kubeconfig <kubeconfig>` through
/// the Helm SDK, without waiting for the workloads (the caller polls them): the CRDs of
/// `crds/` when absent, then the templates. `Ok(Err(message))` is Helm refusing or failing.
pub fn helm_install(
    chart: &ChartRef,
    values: Option<&str>,
    release: &str,
    namespace: &str,
    kubeconfig: &Path,
) -> Result<Result<ReleaseInfo, String>, PythonToolError> {
    let file = values_file(values)?;
    let mut args: Vec<OsString> = vec!["helm-install".into()];
    args.extend(chart.args());
    args.extend([
        "--manifest".into(),
        "--name".into(),
        release.into(),
        "--namespace".into(),
        namespace.into(),
        "--kubeconfig".into(),
        kubeconfig.into(),
    ]);
    if let Some(file) = &file {
        args.extend(["--values".into(), file.path().into()]);
    }
    let raw: RawRelease = run_tool(&args, None)?;
    Ok(raw.into_result("install"))
}

/// `helm uninstall <release> -n <namespace> --kubeconfig <kubeconfig>` through the Helm SDK,
/// without waiting for the deletions. `ignore_not_found`: a release that is already gone is
/// not an error (the answer then has no release, and this returns `Ok(Ok(None))`).
pub fn helm_uninstall(
    release: &str,
    namespace: &str,
    kubeconfig: &Path,
    ignore_not_found: bool,
) -> Result<Result<Option<ReleaseInfo>, String>, PythonToolError> {
    let mut args: Vec<OsString> = vec![
        "helm-uninstall".into(),
        "--name".into(),
        release.into(),
        "--namespace".into(),
        namespace.into(),
        "--kubeconfig".into(),
        kubeconfig.into(),
    ];
    if ignore_not_found {
        args.push("--ignore-not-found".into());
    }
    #[derive(Deserialize)]
    struct Raw {
        ok: bool,
        #[serde(default)]
        error: Option<String>,
        #[serde(default)]
        release: Option<Value>,
    }
    let raw: Raw = run_tool(&args, None)?;
    if !raw.ok {
        return Ok(Err(raw.error.unwrap_or_else(|| {
            "helm uninstall failed without a message".to_owned()
        })));
    }
    // An ignored missing release comes back as an empty object.
    let release = match raw.release {
        Some(value) if value.as_object().is_some_and(|o| !o.is_empty()) => Some(
            serde_json::from_value(value)
                .map_err(|error| format!("helm uninstall answered an odd release: {error}")),
        ),
        _ => None,
    };
    Ok(release.transpose())
}

/// Renders the chart with `values`, panicking with Helm's message when it refuses.
pub fn render_chart_or_panic(
    values: Option<&str>,
    release: &str,
    namespace: &str,
) -> RenderedChart {
    render_chart(&chart_dir(), values, release, namespace)
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|message| panic!("the chart did not render: {message}"))
}

/// Helm's message when it refuses `values`; panics when they render.
pub fn chart_refusal(values: &str, release: &str, namespace: &str) -> String {
    match render_chart(&chart_dir(), Some(values), release, namespace)
        .unwrap_or_else(|e| panic!("{e}"))
    {
        Ok(_) => panic!("the chart rendered with values it should refuse:\n{values}"),
        Err(message) => message,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_python_package_is_an_error_naming_it_and_the_install_command() {
        // `-S` hides site-packages, as on a machine where install-test-deps.sh never ran.
        let result: Result<Value, _> = run_tool_with(
            &OsString::from("python3"),
            &["-S"],
            &[
                "kube-validate".into(),
                "--kubernetes-version".into(),
                OLDEST_KUBERNETES.into(),
            ],
            Some(""),
        );
        let message = result.unwrap_err().to_string();
        assert!(message.contains("'kubernetes-validate'"), "{message}");
        assert!(message.contains(INSTALL_COMMAND), "{message}");
    }

    #[test]
    fn a_missing_interpreter_is_an_error_naming_it() {
        let result: Result<Value, _> = run_tool_with(
            &OsString::from("python3-that-does-not-exist"),
            &[],
            &["helm-yaml".into()],
            None,
        );
        let message = result.unwrap_err().to_string();
        assert!(message.contains("python3-that-does-not-exist"), "{message}");
        assert!(message.contains(PYTHON_ENV), "{message}");
    }
}
