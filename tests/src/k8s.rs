//! The real Kubernetes of the end-to-end tests: finding the cluster (the `../shared/k8s` kit,
//! or one named by `ABSTORE_E2E_KUBECONFIG`), a namespace per test that is removed afterwards
//! (and described when the test failed), the chart's RBAC for the operator's ServiceAccount, and
//! `abstore-operator run` as a child process authenticated as that ServiceAccount.
//!
//! Binaries follow the envtest convention: `kubectl` (and `kube-apiserver`, `etcd`) in
//! `$KUBEBUILDER_ASSETS`. Without a cluster the tests print one line saying why and pass, unless
//! `ABSTORE_E2E_REQUIRED=1` (CI) turns that into a failure.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::Value;

use abstore_operator::crd::DEFAULT_REDIS_IMAGE;

use crate::{chart_dir, free_port, render_chart, repo_root};

/// Directory with `kubectl`, `kube-apiserver` and `etcd` (controller-runtime's envtest name).
pub const ASSETS_ENV: &str = "KUBEBUILDER_ASSETS";
/// State directory of the `../shared/k8s` kit; its `env` file names the running cluster.
pub const STATE_ENV: &str = "K8S_STATE";
/// A kubeconfig to run the e2e tests against instead of the kit's cluster (a kind cluster, say).
/// Deliberately not `KUBECONFIG`: the tests create namespaces and CRDs, and must never land on
/// whatever cluster a developer's shell happens to point at.
pub const KUBECONFIG_ENV: &str = "ABSTORE_E2E_KUBECONFIG";
/// Set to 1 (CI does): a missing cluster fails the e2e tests instead of skipping them.
pub const REQUIRED_ENV: &str = "ABSTORE_E2E_REQUIRED";
/// Set to 1: keep each test's namespace after the test, for a look with kubectl.
pub const KEEP_ENV: &str = "ABSTORE_E2E_KEEP";
/// The `../shared/k8s` kit (its `manifests/` hold the Prometheus Operator's CRDs).
pub const KIT_ENV: &str = "ABSTORE_K8S_KIT";
/// `RUST_LOG` of the operator processes (default: the chart's level plus debug for the operator).
pub const OPERATOR_LOG_ENV: &str = "ABSTORE_E2E_RUST_LOG";
/// How the README tells a user to get a cluster.
pub const HOW_TO_GET_ONE: &str = "start one with `sudo ../shared/k8s/k8s.sh up --node` (or `setup-envtest use 1.28` for the binaries and a kind cluster named by ABSTORE_E2E_KUBECONFIG)";

/// The interval of every poll in this module.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// A reachable cluster.
#[derive(Debug)]
pub struct Cluster {
    /// Admin kubeconfig.
    pub kubeconfig: PathBuf,
    /// `kubectl` from the envtest assets.
    pub kubectl: PathBuf,
    /// Whether a node is Ready (pods run); without one only API-level tests make sense.
    pub node: bool,
    /// Server URL and CA of the admin kubeconfig (for the ServiceAccount kubeconfigs).
    server: String,
    ca_data: String,
}

static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();

/// The cluster, or `None` after printing why the test `test` is skipped. Panics instead when
/// [`REQUIRED_ENV`] is set, so CI never passes by skipping. With a node, the kit's node first
/// gets the default data-plane image ([`kit_redis_images`]).
pub fn cluster(test: &str) -> Option<&'static Cluster> {
    match CLUSTER.get_or_init(find_cluster) {
        Ok(cluster) => {
            // Pods of stores with the default image run wherever there is a node.
            if cluster.node
                && let Err(error) = KIT_REDIS_IMAGES.get_or_init(kit_redis_images)
            {
                panic!("{test}: {error}");
            }
            Some(cluster)
        }
        Err(reason) => skip(test, reason),
    }
}

/// Like [`cluster`], for tests whose pods must really run.
pub fn cluster_with_node(test: &str) -> Option<&'static Cluster> {
    let cluster = cluster(test)?;
    if cluster.node {
        Some(cluster)
    } else {
        skip(
            test,
            "the cluster has no Ready node, so no pod can run; start the kit with `k8s.sh up --node`",
        )
    }
}

fn skip(test: &str, reason: &str) -> Option<&'static Cluster> {
    let required = std::env::var(REQUIRED_ENV).is_ok_and(|v| v == "1" || v == "true");
    if required {
        panic!("{test}: no usable Kubernetes cluster ({reason}) and {REQUIRED_ENV} is set");
    }
    eprintln!("skipped {test}: no usable Kubernetes cluster: {reason}; {HOW_TO_GET_ONE}");
    None
}

/// The Redis image the kit's node holds: Debian's redis 7.0.15 with redis-sentinel, under the
/// upstream image's name (../shared/k8s/README.md). Nothing can be pulled there.
pub const KIT_REDIS_IMAGE: &str = "docker.io/library/redis:7.2.5";

/// Stores created with the defaults run `DEFAULT_REDIS_IMAGE`, which the kit's node does not
/// have and cannot pull: on the kit, the kit's Redis ([`KIT_REDIS_IMAGE`]) is also tagged under
/// the default's name in the node's containerd, so the e2e tests exercise the CRD's default image
/// reference (the binaries inside stay Debian's 7.0.15), and under its digest reference
/// (`docker.io/library/redis@sha256:…`, what a pull by digest records), which
/// [`redis_image_by_digest`] returns. Other clusters pull what they need.
fn kit_redis_images() -> Result<Option<String>, String> {
    if std::env::var_os(KUBECONFIG_ENV).is_some() {
        return Ok(None);
    }
    let socket = kit_state().join("containerd").join("containerd.sock");
    if !socket.exists() {
        return Ok(None);
    }
    let ctr = |args: &[&str]| -> Result<String, String> {
        let output = Command::new("ctr")
            .arg("--address")
            .arg(&socket)
            .args(["-n", "k8s.io"])
            .args(args)
            .output()
            .map_err(|error| format!("ctr {}: {error}", args.join(" ")))?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(format!(
                "ctr {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    };
    // `ctr images ls`: REF TYPE DIGEST SIZE PLATFORMS LABELS
    let listed = ctr(&["images", "ls"])?;
    let digest = listed
        .lines()
        .find_map(|line| {
            let mut columns = line.split_whitespace();
            (columns.next() == Some(KIT_REDIS_IMAGE)).then(|| columns.nth(1))?
        })
        .ok_or_else(|| format!("the kit's node has no {KIT_REDIS_IMAGE}: {listed}"))?
        .to_owned();
    let repository = KIT_REDIS_IMAGE
        .rsplit_once(':')
        .map_or(KIT_REDIS_IMAGE, |(repository, _)| repository);
    let by_digest = format!("{repository}@{digest}");
    for name in [DEFAULT_REDIS_IMAGE, by_digest.as_str()] {
        if !listed
            .lines()
            .any(|line| line.split_whitespace().next() == Some(name))
        {
            ctr(&["images", "tag", KIT_REDIS_IMAGE, name])?;
        }
    }
    Ok(Some(by_digest))
}

static KIT_REDIS_IMAGES: OnceLock<Result<Option<String>, String>> = OnceLock::new();

/// The kit's Redis image by digest (see [`kit_redis_images`]), `None` on other clusters.
pub fn redis_image_by_digest() -> Option<String> {
    KIT_REDIS_IMAGES
        .get_or_init(kit_redis_images)
        .clone()
        .unwrap_or_else(|error| panic!("{error}"))
}

/// Directory of the image archives `scripts/build-images.sh` writes.
pub const IMAGES_DIR_ENV: &str = "ABSTORE_IMAGES_DIR";

/// `$ABSTORE_IMAGES_DIR`, else `<target dir>/images`: a test binary lives in
/// `<target dir>/<profile>/deps/`.
pub fn images_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(IMAGES_DIR_ENV) {
        return PathBuf::from(dir);
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.ancestors().nth(3).map(|target| target.join("images")))
        .unwrap_or_else(|| repo_root().join("target/images"))
}

/// Imports the operator and jobs images (`scripts/build-images.sh`) into the node's containerd
/// through the kit, once per test process: the CronJobs' pods run `ghcr.io/abstore/abstore-jobs`
/// at the workspace version, which no registry serves here.
pub fn import_images() -> Result<(), String> {
    static IMPORTED: OnceLock<Result<(), String>> = OnceLock::new();
    IMPORTED
        .get_or_init(|| {
            let dir = images_dir();
            let archives: Vec<PathBuf> = std::fs::read_dir(&dir)
                .map_err(|error| {
                    format!(
                        "no image archives in {}: {error}; run scripts/build-images.sh",
                        dir.display()
                    )
                })?
                .flatten()
                .map(|entry| entry.path())
                .filter(|path| path.to_string_lossy().ends_with(".oci.tar"))
                .collect();
            if archives.is_empty() {
                return Err(format!(
                    "no *.oci.tar in {}; run scripts/build-images.sh",
                    dir.display()
                ));
            }
            let kit = kit_dir().ok_or("importing images needs the ../shared/k8s kit")?;
            let output = Command::new(kit.join("k8s.sh"))
                .arg("images-import")
                .args(&archives)
                .env(STATE_ENV, kit_state())
                .output()
                .map_err(|error| format!("k8s.sh images-import: {error}"))?;
            if output.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "k8s.sh images-import failed: {}{}",
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                ))
            }
        })
        .clone()
}

/// The kit's directory: `$ABSTORE_K8S_KIT`, else `../shared/k8s` next to the clone, else the
/// machines' shared copy (as scripts/k8s-cluster.sh looks for it).
pub fn kit_dir() -> Option<PathBuf> {
    std::env::var_os(KIT_ENV)
        .map(PathBuf::from)
        .into_iter()
        .chain([
            repo_root().join("../shared/k8s"),
            PathBuf::from("/work/shared/k8s"),
        ])
        .find(|dir| dir.join("k8s.sh").is_file())
}

fn kit_state() -> PathBuf {
    std::env::var_os(STATE_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/abstore-k8s")
        })
}

/// `export NAME=value` lines of the kit's env file.
fn kit_env(state: &Path) -> Option<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(state.join("env")).ok()?;
    Some(
        text.lines()
            .filter_map(|line| line.strip_prefix("export "))
            .filter_map(|line| line.split_once('='))
            .map(|(name, value)| (name.to_owned(), value.trim_matches('\'').to_owned()))
            .collect(),
    )
}

fn find_cluster() -> Result<Cluster, String> {
    let state = kit_state();
    let env = kit_env(&state);
    let assets = std::env::var_os(ASSETS_ENV)
        .map(PathBuf::from)
        .or_else(|| env.as_ref()?.get(ASSETS_ENV).map(PathBuf::from))
        .unwrap_or_else(|| state.join("bin"));
    let kubectl = assets.join("kubectl");
    if !kubectl.is_file() {
        return Err(format!(
            "no kubectl in {} (set {ASSETS_ENV} to a directory with kubectl, kube-apiserver and etcd)",
            assets.display()
        ));
    }
    let kubeconfig = match std::env::var_os(KUBECONFIG_ENV) {
        Some(path) => PathBuf::from(path),
        None => env
            .as_ref()
            .and_then(|env| env.get("KUBECONFIG"))
            .map(PathBuf::from)
            .ok_or_else(|| {
                format!(
                    "neither {KUBECONFIG_ENV} nor a running kit ({}/env) names a cluster",
                    state.display()
                )
            })?,
    };
    let mut cluster = Cluster {
        kubeconfig,
        kubectl,
        node: false,
        server: String::new(),
        ca_data: String::new(),
    };
    cluster
        .kubectl(&["get", "--raw", "/readyz", "--request-timeout=10s"])
        .map_err(|error| format!("the API server does not answer: {error}"))?;
    let view = |path: &str| {
        cluster.kubectl(&[
            "config",
            "view",
            "--raw",
            "--minify",
            "-o",
            &format!("jsonpath={{{path}}}"),
        ])
    };
    let server = view(".clusters[0].cluster.server")?;
    let ca_data = view(".clusters[0].cluster.certificate-authority-data")?;
    (cluster.server, cluster.ca_data) = (server, ca_data);
    let ready = cluster.kubectl(&[
        "get",
        "nodes",
        "-o",
        "jsonpath={.items[*].status.conditions[?(@.type==\"Ready\")].status}",
    ])?;
    cluster.node = ready.split_whitespace().any(|status| status == "True");
    Ok(cluster)
}

impl Cluster {
    /// Runs kubectl as the admin; stdout, or an error with the command and its stderr.
    pub fn kubectl(&self, args: &[&str]) -> Result<String, String> {
        self.kubectl_with_input(args, None)
    }

    /// Runs kubectl with `input` on stdin (`apply -f -`).
    pub fn kubectl_with_input(&self, args: &[&str], input: Option<&str>) -> Result<String, String> {
        run_kubectl(&self.kubectl, &self.kubeconfig, args, input)
    }

    /// Server-side applies a YAML document stream as the admin.
    pub fn apply(&self, yaml: &str) -> Result<String, String> {
        self.kubectl_with_input(
            &[
                "apply",
                "--server-side",
                "--force-conflicts",
                "--field-manager=e2e",
                "-f",
                "-",
            ],
            Some(yaml),
        )
    }

    /// A kube client as the admin.
    pub async fn client(&self) -> kube::Client {
        client_from(&self.kubeconfig).await
    }

    /// Installs (or updates) the ABStore CRD exactly as `abstore-operator crd` prints it, and
    /// waits until the API server serves it.
    pub fn install_crd(&self) -> Result<(), String> {
        let crd = Command::new(operator_binary())
            .arg("crd")
            .output()
            .map_err(|error| format!("running abstore-operator crd: {error}"))?;
        if !crd.status.success() {
            return Err(format!(
                "abstore-operator crd failed: {}",
                String::from_utf8_lossy(&crd.stderr)
            ));
        }
        // Tests starting together on a fresh cluster create the CRD at the same moment: the
        // loser's apply can be refused (already exists / modified); it is applied again.
        let yaml = String::from_utf8_lossy(&crd.stdout).into_owned();
        let deadline = Instant::now() + Duration::from_secs(60);
        while let Err(error) = self.apply(&yaml) {
            if Instant::now() > deadline {
                return Err(error);
            }
            std::thread::sleep(POLL_INTERVAL);
        }
        // Polled rather than `kubectl wait --for=condition=Established`: kubectl 1.28 fails at
        // once ("status.conditions accessor error") when the CRD was created a moment ago and
        // has no conditions yet — two tests creating it together on a fresh cluster hit that.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            // JSON, not a jsonpath filter: that fails too while `conditions` is absent.
            let crd: Value = serde_json::from_str(&self.kubectl(&[
                "get",
                "crd/abstores.abstore.dev",
                "-o",
                "json",
            ])?)
            .map_err(|error| format!("kubectl get crd: {error}"))?;
            let established = crd["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Established" && c["status"] == "True");
            if established {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "crd/abstores.abstore.dev not Established within 60 s: {}",
                    crd["status"]
                ));
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }
}

fn run_kubectl(
    kubectl: &Path,
    kubeconfig: &Path,
    args: &[&str],
    input: Option<&str>,
) -> Result<String, String> {
    let mut command = Command::new(kubectl);
    command
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let describe = || format!("kubectl {}", args.join(" "));
    let mut child = command
        .spawn()
        .map_err(|error| format!("{}: cannot start: {error}", describe()))?;
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin
            .write_all(input.as_bytes())
            .map_err(|error| format!("{}: writing stdin: {error}", describe()))?;
    }
    let output = child
        .wait_with_output()
        .map_err(|error| format!("{}: {error}", describe()))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    } else {
        Err(format!(
            "{} failed ({}): {}",
            describe(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

async fn client_from(kubeconfig: &Path) -> kube::Client {
    abstore::crypto::install_default_provider();
    let config = kube::config::Kubeconfig::read_from(kubeconfig)
        .unwrap_or_else(|error| panic!("reading {}: {error}", kubeconfig.display()));
    let config = kube::Config::from_custom_kubeconfig(config, &Default::default())
        .await
        .unwrap_or_else(|error| panic!("kubeconfig {}: {error}", kubeconfig.display()));
    kube::Client::try_from(config).unwrap_or_else(|error| panic!("kube client: {error}"))
}

/// The `abstore-operator` binary of this workspace, built (or found up to date) by cargo once
/// per test process: `CARGO_BIN_EXE_*` only names a package's own binaries.
pub fn operator_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| cargo_binary("abstore-operator", "abstore-operator"))
}

/// The `abstore-api` binary, built as [`operator_binary`] is.
pub fn api_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| cargo_binary("abstore-api", "abstore-api"))
}

/// Builds binary `bin` of workspace package `package` (with the cargo running the tests, into
/// its target directory) and returns its path: a test runs what a user runs.
pub fn cargo_binary(package: &str, bin: &str) -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .current_dir(repo_root())
        .args([
            "build",
            "--locked",
            "-p",
            package,
            "--bin",
            bin,
            "--message-format=json",
        ])
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|error| panic!("running cargo build -p {package}: {error}"));
    assert!(output.status.success(), "cargo build -p {package} failed");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|message| message["reason"] == "compiler-artifact")
        .filter(|message| message["target"]["name"] == bin)
        .find_map(|message| message["executable"].as_str().map(PathBuf::from))
        .unwrap_or_else(|| panic!("cargo build printed no {bin} executable"))
}

/// Polls `check` every [`POLL_INTERVAL`] until it returns `Ok`, or fails after `within` with the
/// last error it gave.
pub async fn poll<T, F, Fut>(what: &str, within: Duration, check: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    poll_every(POLL_INTERVAL, what, within, check).await
}

/// [`poll`] at `interval`: for waits whose end is itself a measurement.
pub async fn poll_every<T, F, Fut>(
    interval: Duration,
    what: &str,
    within: Duration,
    mut check: F,
) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let start = Instant::now();
    loop {
        let last = match check().await {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        if start.elapsed() >= within {
            return Err(format!(
                "timed out after {within:?} waiting for {what}; last: {last}"
            ));
        }
        tokio::time::sleep(interval).await;
    }
}

/// A namespace of one test: created with a unique name, described (pods, stores, Events, the
/// registered logs) when the test panics, and deleted afterwards unless [`KEEP_ENV`] is set.
#[derive(Debug)]
pub struct TestNamespace {
    pub name: String,
    cluster: &'static Cluster,
    /// Files whose tail goes into the failure report (operator logs).
    logs: std::sync::Mutex<Vec<PathBuf>>,
}

impl TestNamespace {
    /// Creates `e2e-<test>-<random>` (the test name cut to fit 63 characters).
    pub fn create(cluster: &'static Cluster, test: &str) -> TestNamespace {
        let slug: String = test
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .take(40)
            .collect();
        let name = format!(
            "e2e-{}-{:06x}",
            slug.trim_matches('-'),
            rand_suffix() & 0xff_ffff
        );
        cluster
            .kubectl(&["create", "namespace", &name])
            .unwrap_or_else(|error| panic!("{error}"));
        TestNamespace {
            name,
            cluster,
            logs: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Adds a log file to the failure report.
    pub fn report_log(&self, path: &Path) {
        if let Ok(mut logs) = self.logs.lock() {
            logs.push(path.to_owned());
        }
    }

    /// What a person would look at first: stores, workloads, pods, Events, and the logs.
    pub fn describe(&self) -> String {
        let ns = self.name.as_str();
        let mut out = String::new();
        for args in [
            vec![
                "get",
                "abstores,statefulsets,pods,services,endpoints,cronjobs,jobs,pvc",
                "-o",
                "wide",
                "-n",
                ns,
            ],
            vec!["get", "abstores", "-n", ns, "-o", "yaml"],
            vec!["get", "events", "-n", ns, "--sort-by=.lastTimestamp"],
            // What the store's own processes said (Sentinel's +sdown/+odown/+failover lines,
            // TILT, the start and preStop scripts), the last lines of every container.
            vec![
                "logs",
                "-n",
                ns,
                "-l",
                "app.kubernetes.io/name=abstore",
                "--all-containers",
                "--prefix",
                "--timestamps",
                "--tail=40",
                "--max-log-requests=30",
            ],
        ] {
            out.push_str(&format!("$ kubectl {}\n", args.join(" ")));
            out.push_str(&self.cluster.kubectl(&args).unwrap_or_else(|error| error));
            out.push('\n');
        }
        if let Ok(logs) = self.logs.lock() {
            for log in logs.iter() {
                out.push_str(&format!("--- tail of {} ---\n", log.display()));
                out.push_str(&tail(log, 80));
            }
        }
        out
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "==== e2e namespace {} after a failure ====\n{}",
                self.name,
                self.describe()
            );
        }
        let keep = std::env::var(KEEP_ENV).is_ok_and(|v| v == "1" || v == "true");
        if keep {
            eprintln!("keeping namespace {} ({KEEP_ENV})", self.name);
            return;
        }
        if let Err(error) =
            self.cluster
                .kubectl(&["delete", "namespace", &self.name, "--wait=false"])
        {
            eprintln!("cleaning up: {error}");
        }
    }
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    hasher.finish()
}

/// The last `lines` lines of a file.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    let mut out = all[all.len().saturating_sub(lines)..].join("\n");
    out.push('\n');
    out
}

/// The operator as the chart installs it, minus the Deployment: the chart rendered by the real
/// Helm SDK with `values`, its ServiceAccount and RBAC applied, a token of that ServiceAccount
/// in a kubeconfig of its own, and the container's args and env for [`OperatorProcess`].
#[derive(Debug)]
pub struct OperatorInstall {
    pub release: String,
    pub namespace: String,
    /// The rendered Deployment's container `args` and literal `env`.
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// Cluster-scoped objects the install created (deleted on drop).
    cluster_scoped: Vec<(String, String)>,
    dir: tempfile::TempDir,
    cluster: &'static Cluster,
}

impl OperatorInstall {
    /// Renders the chart with `values` into `namespace` and applies everything but the
    /// Deployment, Services and monitoring objects (the operator runs as a local process).
    pub fn install(
        cluster: &'static Cluster,
        namespace: &str,
        values: &str,
    ) -> Result<OperatorInstall, String> {
        let release = format!("e2e{:06x}", rand_suffix() & 0xff_ffff);
        let rendered = render_chart(&chart_dir(), Some(values), &release, namespace)
            .map_err(|error| error.to_string())?
            .map_err(|error| format!("helm template refused the values: {error}"))?;
        let mut applied = Vec::new();
        let mut cluster_scoped = Vec::new();
        let mut deployment = None;
        for manifest in rendered.manifests.values() {
            for document in serde_yaml::Deserializer::from_str(manifest) {
                let value = Value::deserialize(document)
                    .map_err(|error| format!("the chart rendered invalid YAML: {error}"))?;
                let kind = value["kind"].as_str().unwrap_or_default().to_owned();
                let name = value["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                match kind.as_str() {
                    "ServiceAccount" | "Role" | "RoleBinding" => applied.push(value),
                    "ClusterRole" | "ClusterRoleBinding" => {
                        cluster_scoped.push((kind.clone(), name));
                        applied.push(value);
                    }
                    "Deployment" => deployment = Some(value),
                    _ => {}
                }
            }
        }
        let deployment = deployment.ok_or("the chart rendered no Deployment")?;
        let install = OperatorInstall {
            release,
            namespace: namespace.to_owned(),
            args: container_args(&deployment),
            env: container_env(&deployment),
            cluster_scoped,
            dir: tempfile::tempdir().map_err(|error| error.to_string())?,
            cluster,
        };
        let yaml: Vec<String> = applied
            .iter()
            .map(|object| serde_yaml::to_string(object).unwrap_or_default())
            .collect();
        cluster.apply(&yaml.join("---\n"))?;
        let service_account = applied
            .iter()
            .find(|object| object["kind"] == "ServiceAccount")
            .and_then(|object| object["metadata"]["name"].as_str())
            .ok_or("the chart rendered no ServiceAccount")?;
        let token = cluster.kubectl(&[
            "create",
            "token",
            service_account,
            "-n",
            namespace,
            "--duration=6h",
        ])?;
        std::fs::write(
            install.kubeconfig(),
            service_account_kubeconfig(cluster, namespace, service_account, &token),
        )
        .map_err(|error| format!("writing the operator's kubeconfig: {error}"))?;
        Ok(install)
    }

    /// The ServiceAccount's kubeconfig (what the in-cluster config gives the pod).
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    /// `kubectl` as the operator's ServiceAccount (for RBAC checks).
    pub fn kubectl_as_operator(&self, args: &[&str]) -> Result<String, String> {
        run_kubectl(&self.cluster.kubectl, &self.kubeconfig(), args, None)
    }

    /// Starts `abstore-operator` with the chart's args and env, as pod `identity`.
    pub fn start(&self, identity: &str) -> OperatorProcess {
        OperatorProcess::start(self, identity)
    }
}

impl Drop for OperatorInstall {
    fn drop(&mut self) {
        for (kind, name) in &self.cluster_scoped {
            let _ =
                self.cluster
                    .kubectl(&["delete", kind, name, "--ignore-not-found", "--wait=false"]);
        }
    }
}

fn container_args(deployment: &Value) -> Vec<String> {
    deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .map(|args| {
            args.iter()
                .filter_map(|arg| arg.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn container_env(deployment: &Value) -> BTreeMap<String, String> {
    deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .map(|env| {
            env.iter()
                .filter_map(|var| {
                    Some((
                        var["name"].as_str()?.to_owned(),
                        var["value"].as_str()?.to_owned(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn service_account_kubeconfig(
    cluster: &Cluster,
    namespace: &str,
    service_account: &str,
    token: &str,
) -> String {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "e2e", "cluster": {
            "server": cluster.server, "certificate-authority-data": cluster.ca_data}}],
        "users": [{"name": service_account, "user": {"token": token}}],
        "contexts": [{"name": "operator", "context": {
            "cluster": "e2e", "user": service_account, "namespace": namespace}}],
        "current-context": "operator",
    })
    .to_string()
}

/// How long `abstore-operator run` may take to report ready.
pub const OPERATOR_READY: Duration = Duration::from_secs(60);

/// What most e2e tests start from: the CRD installed, a fresh namespace, the chart's RBAC for an
/// operator that watches only that namespace (plus `extra_values`), and `abstore-operator run`
/// as a process, ready. Dropped in field order: the operator stops before its RBAC and the
/// namespace go.
#[derive(Debug)]
pub struct OperatorSetup {
    pub operator: OperatorProcess,
    pub install: OperatorInstall,
    pub ns: TestNamespace,
}

impl OperatorSetup {
    pub async fn start(cluster: &'static Cluster, test: &str, extra_values: &str) -> OperatorSetup {
        cluster
            .install_crd()
            .unwrap_or_else(|error| panic!("{error}"));
        let ns = TestNamespace::create(cluster, test);
        let values = format!("watchNamespace: {}\n{extra_values}", ns.name);
        let install = OperatorInstall::install(cluster, &ns.name, &values)
            .unwrap_or_else(|error| panic!("{error}"));
        let mut operator = install.start("abstore-operator-0");
        ns.report_log(&operator.log);
        operator
            .wait_ready(OPERATOR_READY)
            .await
            .unwrap_or_else(|error| panic!("{error}"));
        OperatorSetup {
            operator,
            install,
            ns,
        }
    }
}

/// `abstore-operator run` as a child process: the chart's args (the listen address moved to a
/// free loopback port), its env plus what the Deployment takes from the pod (POD_NAME,
/// POD_NAMESPACE), and the ServiceAccount's kubeconfig. Killed on drop.
#[derive(Debug)]
pub struct OperatorProcess {
    child: Option<Child>,
    pub identity: String,
    pub port: u16,
    pub log: PathBuf,
}

impl OperatorProcess {
    fn start(install: &OperatorInstall, identity: &str) -> OperatorProcess {
        let port = free_port().unwrap_or_else(|error| panic!("{error}"));
        let args: Vec<String> = install
            .args
            .iter()
            .map(|arg| {
                if arg.starts_with("--listen=") {
                    format!("--listen=127.0.0.1:{port}")
                } else {
                    arg.clone()
                }
            })
            .collect();
        let log = install.dir.path().join(format!("{identity}.log"));
        let file = std::fs::File::create(&log)
            .unwrap_or_else(|error| panic!("creating {}: {error}", log.display()));
        let mut env = install.env.clone();
        let level = std::env::var(OPERATOR_LOG_ENV).unwrap_or_else(|_| {
            env.get("RUST_LOG")
                .map_or("info", String::as_str)
                .to_owned()
        });
        env.insert("RUST_LOG".to_owned(), level);
        env.insert("POD_NAME".to_owned(), identity.to_owned());
        env.insert("POD_NAMESPACE".to_owned(), install.namespace.clone());
        let child = Command::new(operator_binary())
            .args(&args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("KUBECONFIG", install.kubeconfig())
            .envs(&env)
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap_or_else(|error| panic!("{error}")))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|error| panic!("starting abstore-operator {args:?}: {error}"));
        OperatorProcess {
            child: Some(child),
            identity: identity.to_owned(),
            port,
            log,
        }
    }

    /// Waits until `/readyz` answers 200; fails at once if the process exits.
    pub async fn wait_ready(&mut self, within: Duration) -> Result<(), String> {
        let port = self.port;
        let start = Instant::now();
        loop {
            if let Some(status) = self.exited() {
                return Err(format!(
                    "abstore-operator exited with {status} before it was ready:\n{}",
                    tail(&self.log, 40)
                ));
            }
            if http_get(port, "/readyz").is_ok_and(|(code, _)| code == 200) {
                return Ok(());
            }
            if start.elapsed() > within {
                return Err(format!(
                    "abstore-operator not ready after {within:?}:\n{}",
                    tail(&self.log, 40)
                ));
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// The exit status, if the process has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    /// The `/metrics` text.
    pub fn metrics(&self) -> Result<String, String> {
        let (code, body) = http_get(self.port, "/metrics")?;
        if code == 200 {
            Ok(body)
        } else {
            Err(format!("/metrics answered {code}: {body}"))
        }
    }

    /// The sum of a metric's samples whose labels include every `labels` pair (0 when none).
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> Result<f64, String> {
        Ok(sum_samples(&self.metrics()?, name, labels))
    }

    /// SIGKILL, as a node failure or an OOM kill would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM (what the kubelet sends) and wait for the exit.
    pub fn terminate(&mut self, within: Duration) -> Result<std::process::ExitStatus, String> {
        let Some(mut child) = self.child.take() else {
            return Err("not running".to_owned());
        };
        let pid = child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Ok(status);
            }
            if start.elapsed() > within {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "abstore-operator did not stop within {within:?} of SIGTERM"
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "==== tail of operator {} ({}) ====\n{}",
                self.identity,
                self.log.display(),
                tail(&self.log, 60)
            );
        }
        self.kill();
    }
}

/// Sums the samples of `name` (OpenMetrics text) whose labels include all of `labels`.
pub fn sum_samples(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, label_text) = match series.split_once('{') {
                Some((metric, rest)) => (metric, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            if metric != name {
                return None;
            }
            let all = labels
                .iter()
                .all(|(key, value)| label_text.contains(&format!("{key}=\"{value}\"")));
            all.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

/// A plain HTTP/1.0 GET on loopback: status code and body.
pub fn http_get(port: u16, path: &str) -> Result<(u16, String), String> {
    http_get_from(SocketAddr::from((Ipv4Addr::LOCALHOST, port)), path)
}

/// A plain HTTP/1.0 GET of `addr` (a pod or Service address: they route from this machine).
pub fn http_get_from(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|error| format!("connecting to {addr}: {error}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|error| error.to_string())?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .map_err(|error| format!("GET {path}: {error}"))?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|error| format!("GET {path}: {error}"))?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("GET {path}: no status line in {head:?}"))?;
    Ok((code, body.to_owned()))
}

// ---------------------------------------------------------------------------------------------
// Stores, as the tests look at them.

/// A store of three Redis pods and three sentinels from images already on the node comes up
/// in about 20–45 s; on a loaded 2-core machine it takes longer.
pub const STORE_READY: Duration = Duration::from_secs(300);

/// A file of the chart's `examples/`.
pub fn example(name: &str) -> String {
    std::fs::read_to_string(chart_dir().join("examples").join(format!("{name}.yaml")))
        .unwrap_or_else(|error| panic!("reading example {name}: {error}"))
}

/// The store's `.status` as JSON (`Value::Null` when it has none yet).
pub fn store_status(cluster: &Cluster, ns: &str, store: &str) -> Result<Value, String> {
    let json = cluster.kubectl(&["get", "abstore", store, "-n", ns, "-o", "json"])?;
    let object: Value = serde_json::from_str(&json).map_err(|error| error.to_string())?;
    Ok(object["status"].clone())
}

/// A condition of a status, by type.
pub fn condition<'a>(status: &'a Value, type_: &str) -> Option<&'a Value> {
    status["conditions"]
        .as_array()?
        .iter()
        .find(|condition| condition["type"] == type_)
}

/// Waits until the store is Ready with a primary, and returns its status.
pub async fn wait_store_ready(cluster: &Cluster, ns: &str, store: &str) -> Value {
    poll(
        &format!("ABStore {store} Ready with a primary"),
        STORE_READY,
        || async {
            let status = store_status(cluster, ns, store)?;
            let ready = status["phase"] == "Ready"
                && status["primary"].is_string()
                && condition(&status, "PrimaryAvailable").is_some_and(|c| c["status"] == "True");
            if ready {
                Ok(status)
            } else {
                Err(format!("status: {status}"))
            }
        },
    )
    .await
    .unwrap_or_else(|error| panic!("{error}"))
}

/// Waits until the store's `FailoverReady` condition is True (a replica in sync that every
/// sentinel knows): before that, a primary that dies cannot be failed over (Sentinel learns
/// replicas from the primary's INFO every 10 s, later on a loaded machine), so tests that kill
/// or stop the primary wait for it first.
pub async fn wait_failover_ready(cluster: &Cluster, ns: &str, store: &str) -> Value {
    poll(
        &format!("ABStore {store} FailoverReady"),
        STORE_READY,
        || async {
            let status = store_status(cluster, ns, store)?;
            match condition(&status, "FailoverReady") {
                Some(c) if c["status"] == "True" => Ok(status),
                Some(c) => Err(format!("{}: {}", c["reason"], c["message"])),
                None => Err(format!("no FailoverReady condition: {status}")),
            }
        },
    )
    .await
    .unwrap_or_else(|error| panic!("{error}"))
}

/// Every object `abstore-operator render` prints for `yaml` in `ns`, as JSON.
pub fn rendered(yaml: &str, ns: &str) -> Vec<Value> {
    let mut render = std::process::Command::new(operator_binary())
        .args(["render", "-f", "-", "-n", ns])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("abstore-operator render: {error}"));
    let mut stdin = render
        .stdin
        .take()
        .unwrap_or_else(|| panic!("render has no stdin"));
    std::io::Write::write_all(&mut stdin, yaml.as_bytes())
        .unwrap_or_else(|error| panic!("{error}"));
    drop(stdin);
    let output = render
        .wait_with_output()
        .unwrap_or_else(|error| panic!("{error}"));
    assert!(output.status.success(), "render failed");
    serde_yaml::Deserializer::from_str(&String::from_utf8_lossy(&output.stdout))
        .filter_map(|document| serde::Deserialize::deserialize(document).ok())
        .collect()
}

/// `(kind, name)` of every object `abstore-operator render` prints for `yaml` in `ns`.
pub fn rendered_objects(yaml: &str, ns: &str) -> Vec<(String, String)> {
    rendered(yaml, ns)
        .into_iter()
        .filter_map(|object: Value| {
            Some((
                object["kind"].as_str()?.to_lowercase(),
                object["metadata"]["name"].as_str()?.to_owned(),
            ))
        })
        .collect()
}

/// The addresses behind a Service.
pub async fn endpoint_ips(client: &kube::Client, ns: &str, service: &str) -> Vec<String> {
    let api: kube::Api<k8s_openapi::api::core::v1::Endpoints> =
        kube::Api::namespaced(client.clone(), ns);
    let Ok(endpoints) = api.get(service).await else {
        return Vec::new();
    };
    endpoints
        .subsets
        .unwrap_or_default()
        .into_iter()
        .flat_map(|subset| subset.addresses.unwrap_or_default())
        .map(|address| address.ip)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_summed_over_matching_labels_only() {
        // The reconcile-rate checks read counters this way: a wrong match would hide a loop.
        let text = "# TYPE x counter\nx_total{a=\"1\",b=\"2\"} 3\nx_total{a=\"1\",b=\"3\"} 4\nx_total{a=\"2\"} 100\ny_total 7\n";
        assert_eq!(sum_samples(text, "x_total", &[("a", "1")]), 7.0);
        assert_eq!(sum_samples(text, "x_total", &[]), 107.0);
        assert_eq!(sum_samples(text, "y_total", &[]), 7.0);
        assert_eq!(sum_samples(text, "z_total", &[]), 0.0);
    }
}
