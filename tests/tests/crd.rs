//! The CRD committed in the chart (`charts/abstore-operator/crds/`) is the one the operator's
//! types generate, and kubectl and Helm read it the way it was meant.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use abstore_tests::{chart_dir, read_yaml_as_kubectl_does};

const CRD_FILE: &str = "crds/abstores.abstore.dev.yaml";
const REGENERATE: &str = "scripts/generate-crd.sh";

fn committed_crd() -> String {
    let path = chart_dir().join(CRD_FILE);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// What `abstore-operator crd` prints.
fn generated_crd() -> String {
    abstore_operator::yaml::to_yaml(&abstore_operator::rules::crd()).unwrap()
}

#[test]
fn committed_crd_matches_the_generated_one() {
    // Helm installs crds/ as committed; a CRD change that is not regenerated would ship a
    // schema that refuses (or silently prunes) the new fields.
    let committed = committed_crd();
    let generated = generated_crd();
    if committed != generated {
        let first_difference = committed
            .lines()
            .zip(generated.lines())
            .enumerate()
            .find(|(_, (a, b))| a != b)
            .map(|(i, (a, b))| format!("line {}: committed {a:?}, generated {b:?}", i + 1))
            .unwrap_or_else(|| "one file is a prefix of the other".to_owned());
        panic!(
            "charts/abstore-operator/{CRD_FILE} is out of date with operator/src/crd.rs \
             ({first_difference}). Regenerate it with `{REGENERATE}` \
             (= `cargo run -p abstore-operator -- crd > charts/abstore-operator/{CRD_FILE}`) and commit it."
        );
    }
}

#[test]
fn the_committed_crd_is_a_namespaced_abstore_crd_with_a_status_subresource() {
    let crd: serde_json::Value = serde_yaml::from_str(&committed_crd()).unwrap();
    assert_eq!(crd["kind"], "CustomResourceDefinition");
    assert_eq!(crd["metadata"]["name"], "abstores.abstore.dev");
    assert_eq!(crd["spec"]["scope"], "Namespaced");
    let version = &crd["spec"]["versions"][0];
    assert_eq!(version["name"], "v1alpha1");
    assert_eq!(version["served"], true);
    assert_eq!(version["storage"], true);
    assert!(version["subresources"]["status"].is_object());
}

#[test]
fn kubectl_and_helm_read_the_committed_crd_as_generated() {
    // kubectl and Helm parse YAML with sigs.k8s.io/yaml, whose YAML 1.1 scalars turn an unquoted
    // `no`, `yes`, `on` or `off` into a boolean; serde_yaml writes YAML 1.2, where they are
    // strings. An enum value like appendfsync's `no` must survive the trip.
    let as_kubectl_reads_it = read_yaml_as_kubectl_does(&committed_crd())
        .unwrap()
        .unwrap_or_else(|e| panic!("Helm cannot read the CRD: {e}"));
    let as_kubectl_reads_it = numbers_as_floats(as_kubectl_reads_it);
    let generated =
        numbers_as_floats(serde_json::to_value(abstore_operator::rules::crd()).unwrap());
    if as_kubectl_reads_it != generated {
        panic!(
            "kubectl/Helm read charts/abstore-operator/{CRD_FILE} differently from the CRD the \
             operator generates (unquoted YAML 1.1 booleans such as `- no`?): {}",
            first_difference(&generated, &as_kubectl_reads_it, "")
        );
    }
}

/// JSON has one number type: `86400.0` and `86400` are the same value to the API server.
fn numbers_as_floats(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Number(n) => n.as_f64().map(Value::from).unwrap_or(Value::Number(n)),
        Value::Array(items) => Value::Array(items.into_iter().map(numbers_as_floats).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (k, numbers_as_floats(v)))
                .collect(),
        ),
        other => other,
    }
}

fn first_difference(
    expected: &serde_json::Value,
    actual: &serde_json::Value,
    path: &str,
) -> String {
    use serde_json::Value;
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (key, value) in e {
                match a.get(key) {
                    Some(other) if other == value => {}
                    Some(other) => return first_difference(value, other, &format!("{path}.{key}")),
                    None => return format!("{path}.{key} missing"),
                }
            }
            format!("{path} has extra keys")
        }
        (Value::Array(e), Value::Array(a)) if e.len() == a.len() => {
            for (i, (x, y)) in e.iter().zip(a).enumerate() {
                if x != y {
                    return first_difference(x, y, &format!("{path}[{i}]"));
                }
            }
            path.to_owned()
        }
        _ => format!("{path}: generated {expected}, read as {actual}"),
    }
}
