//! The operator as users install it: the chart installed as a Helm release by the real Helm SDK
//! (`helm_install`, with the cluster's admin kubeconfig), the operator running in a pod from its
//! image. The release's objects are read from the manifest Helm applied, so checking what an
//! uninstall removed needs no list of names. On a failure the report shows the release's
//! workloads, its pods described and the operator's log, and the release is uninstalled on drop.

use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::Value;

use crate::k8s::{Cluster, poll};
use crate::{ChartRef, ReleaseInfo, helm_install, helm_uninstall};

/// Container waiting reasons that never clear by themselves: waiting on would only hide them.
const STUCK_REASONS: [&str; 4] = [
    "ErrImageNeverPull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
];

/// One object of the release's manifest.
#[derive(Clone, Debug)]
pub struct ReleaseObject {
    pub kind: String,
    pub name: String,
    /// `None` for cluster-scoped kinds.
    pub namespace: Option<String>,
    pub object: Value,
}

impl ReleaseObject {
    /// `Kind/name (namespace)`, for messages.
    pub fn describe(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{}/{} in {ns}", self.kind, self.name),
            None => format!("{}/{}", self.kind, self.name),
        }
    }
}

/// The chart installed as a release; uninstalled (if still installed) on drop.
#[derive(Debug)]
pub struct OperatorRelease {
    pub info: ReleaseInfo,
    pub objects: Vec<ReleaseObject>,
    installed: bool,
    cluster: &'static Cluster,
}

impl OperatorRelease {
    /// `helm install` of `chart` (the directory, or a version from an OCI registry) into
    /// `namespace` with `values` (YAML), under a fresh release name. Returns once Helm has
    /// created the objects; see [`Self::wait_available`].
    pub fn install(
        cluster: &'static Cluster,
        chart: &ChartRef,
        namespace: &str,
        values: &str,
    ) -> Result<OperatorRelease, String> {
        let suffix: String = uuid::Uuid::new_v4().simple().to_string();
        let name = format!("helm{}", &suffix[..6]);
        let info = helm_install(chart, Some(values), &name, namespace, &cluster.kubeconfig)
            .map_err(|error| error.to_string())?
            .map_err(|error| format!("helm install {name} refused or failed: {error}"))?;
        let mut objects = Vec::new();
        for document in serde_yaml::Deserializer::from_str(&info.manifest) {
            let object = Value::deserialize(document)
                .map_err(|error| format!("the release manifest is not YAML: {error}"))?;
            let (Some(kind), Some(name)) =
                (object["kind"].as_str(), object["metadata"]["name"].as_str())
            else {
                continue;
            };
            let namespace = match kind {
                "ClusterRole" | "ClusterRoleBinding" => None,
                _ => Some(
                    object["metadata"]["namespace"]
                        .as_str()
                        .unwrap_or(namespace)
                        .to_owned(),
                ),
            };
            objects.push(ReleaseObject {
                kind: kind.to_owned(),
                name: name.to_owned(),
                namespace,
                object: object.clone(),
            });
        }
        Ok(OperatorRelease {
            info,
            objects,
            installed: true,
            cluster,
        })
    }

    /// The release name.
    pub fn name(&self) -> &str {
        &self.info.name
    }

    /// The release namespace (the operator's).
    pub fn namespace(&self) -> &str {
        &self.info.namespace
    }

    /// The objects of `kind` in the manifest.
    pub fn of_kind(&self, kind: &str) -> Vec<&ReleaseObject> {
        self.objects
            .iter()
            .filter(|object| object.kind == kind)
            .collect()
    }

    /// The operator's Deployment, as the release applied it.
    pub fn deployment(&self) -> Result<&ReleaseObject, String> {
        self.of_kind("Deployment")
            .into_iter()
            .next()
            .ok_or_else(|| format!("release {} has no Deployment", self.name()))
    }

    /// The Deployment's pod selector as a kubectl `-l` argument.
    pub fn pod_selector(&self) -> Result<String, String> {
        let deployment = self.deployment()?;
        label_selector(&deployment.object["spec"]["selector"])
    }

    /// The operator's pods (`kubectl get pods -l <selector> -o json` items).
    pub fn pods(&self) -> Result<Vec<Value>, String> {
        let json = self.cluster.kubectl(&[
            "get",
            "pods",
            "-n",
            self.namespace(),
            "-l",
            &self.pod_selector()?,
            "-o",
            "json",
        ])?;
        let list: Value = serde_json::from_str(&json).map_err(|error| error.to_string())?;
        Ok(list["items"].as_array().cloned().unwrap_or_default())
    }

    /// Waits until the Deployment is Available with every replica available (the readiness
    /// probe passes), and returns how long that took. Panics at once when a container is stuck
    /// in a state that never clears (an image that is not on the node, say).
    pub async fn wait_available(&self, within: Duration) -> Duration {
        let start = Instant::now();
        let deployment = self
            .deployment()
            .unwrap_or_else(|error| panic!("{error}"))
            .name
            .clone();
        poll(
            &format!("Deployment {deployment} Available"),
            within,
            || async {
                for pod in self.pods()? {
                    for status in pod["status"]["containerStatuses"]
                        .as_array()
                        .into_iter()
                        .flatten()
                    {
                        let reason = status["state"]["waiting"]["reason"]
                            .as_str()
                            .unwrap_or_default();
                        if STUCK_REASONS.contains(&reason) {
                            panic!(
                                "operator pod {} is stuck: {reason}: {}",
                                pod["metadata"]["name"], status["state"]["waiting"]["message"]
                            );
                        }
                    }
                }
                let json = self.cluster.kubectl(&[
                    "get",
                    "deployment",
                    &deployment,
                    "-n",
                    self.namespace(),
                    "-o",
                    "json",
                ])?;
                let object: Value =
                    serde_json::from_str(&json).map_err(|error| error.to_string())?;
                let available = object["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Available" && c["status"] == "True");
                let wanted = object["spec"]["replicas"].as_u64().unwrap_or(1);
                let ready = object["status"]["availableReplicas"]
                    .as_u64()
                    .unwrap_or_default();
                if available && ready == wanted {
                    Ok(())
                } else {
                    Err(format!("status: {}", object["status"]))
                }
            },
        )
        .await
        .unwrap_or_else(|error| panic!("{error}"));
        start.elapsed()
    }

    /// `helm uninstall` (without waiting for the deletions; see [`Self::remaining`]).
    pub fn uninstall(&mut self) -> Result<ReleaseInfo, String> {
        let result = helm_uninstall(
            self.name(),
            self.namespace(),
            &self.cluster.kubeconfig,
            false,
        )
        .map_err(|error| error.to_string())?
        .map_err(|error| format!("helm uninstall {}: {error}", self.name()))?;
        self.installed = false;
        result.ok_or_else(|| format!("helm uninstall {} answered no release", self.name()))
    }

    /// The objects of the manifest that still exist, as [`ReleaseObject::describe`] lines.
    pub fn remaining(&self) -> Result<Vec<String>, String> {
        let mut remaining = Vec::new();
        for object in &self.objects {
            let mut args = vec![
                "get",
                object.kind.as_str(),
                object.name.as_str(),
                "--ignore-not-found",
                "-o",
                "name",
            ];
            if let Some(ns) = &object.namespace {
                args.extend(["-n", ns.as_str()]);
            }
            if !self.cluster.kubectl(&args)?.is_empty() {
                remaining.push(object.describe());
            }
        }
        Ok(remaining)
    }

    /// The release's workloads, its pods described and the operator's log.
    pub fn describe(&self) -> String {
        let ns = self.namespace();
        let instance = format!("app.kubernetes.io/instance={}", self.name());
        let selector = self.pod_selector().unwrap_or_else(|_| instance.clone());
        let mut out = String::new();
        for args in [
            vec![
                "get",
                "deployments,replicasets,pods,services,endpoints,networkpolicies",
                "-o",
                "wide",
                "-n",
                ns,
                "-l",
                &instance,
            ],
            vec!["describe", "pods", "-n", ns, "-l", &selector],
            vec![
                "logs",
                "-n",
                ns,
                "-l",
                &selector,
                "--all-containers",
                "--prefix",
                "--tail=100",
            ],
            vec![
                "logs",
                "-n",
                ns,
                "-l",
                &selector,
                "--all-containers",
                "--prefix",
                "--previous",
                "--tail=100",
            ],
        ] {
            out.push_str(&format!("$ kubectl {}\n", args.join(" ")));
            out.push_str(&self.cluster.kubectl(&args).unwrap_or_else(|error| error));
            out.push('\n');
        }
        out
    }
}

impl Drop for OperatorRelease {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "==== Helm release {} in {} after a failure ====\n{}",
                self.name(),
                self.namespace(),
                self.describe()
            );
        }
        if self.installed {
            let result = helm_uninstall(
                self.name(),
                self.namespace(),
                &self.cluster.kubeconfig,
                true,
            );
            if !matches!(result, Ok(Ok(_))) {
                eprintln!("cleaning up: helm uninstall {}: {result:?}", self.name());
            }
        }
    }
}

/// A `LabelSelector` (`matchLabels` and `matchExpressions`) as a kubectl `-l` argument, so that
/// the API server, not the test, decides what it selects. An empty selector selects everything
/// and comes back as an empty string.
pub fn label_selector(selector: &Value) -> Result<String, String> {
    let mut terms = Vec::new();
    if let Some(labels) = selector["matchLabels"].as_object() {
        for (key, value) in labels {
            let value = value
                .as_str()
                .ok_or_else(|| format!("label {key} is not a string in {selector}"))?;
            terms.push(format!("{key}={value}"));
        }
    }
    for expression in selector["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let key = expression["key"].as_str().unwrap_or_default();
        let values: Vec<&str> = expression["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        terms.push(match expression["operator"].as_str() {
            Some("In") => format!("{key} in ({})", values.join(",")),
            Some("NotIn") => format!("{key} notin ({})", values.join(",")),
            Some("Exists") => key.to_owned(),
            Some("DoesNotExist") => format!("!{key}"),
            other => return Err(format!("unknown selector operator {other:?} in {selector}")),
        });
    }
    Ok(terms.join(","))
}
