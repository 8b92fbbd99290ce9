// Validates Prometheus Operator objects (a JSON array on stdin) against the schemas of the
// Prometheus Operator's CRDs, as packaged by @kubernetes-models/prometheus-operator (generated
// from the upstream CRDs). Prints one JSON array of {kind, name, valid, error}. Used by the
// tests (tests/src/prometheus_operator.rs); the package is installed next to this file by
// scripts/install-test-deps.sh.
import { readFileSync } from "node:fs";

const { PrometheusRule, ServiceMonitor, PodMonitor } = await import(
  "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1"
);
const kinds = { PrometheusRule, ServiceMonitor, PodMonitor };
const objects = JSON.parse(readFileSync(0, "utf8"));
const results = objects.map((object) => {
  const kind = object.kind;
  const name = object.metadata?.name ?? "";
  const Model = kinds[kind];
  if (!Model) {
    return { kind, name, valid: false, error: `not a Prometheus Operator kind: ${kind}` };
  }
  try {
    new Model(object).validate();
    return { kind, name, valid: true, error: null };
  } catch (error) {
    return { kind, name, valid: false, error: String(error.message ?? error) };
  }
});
process.stdout.write(JSON.stringify(results));
