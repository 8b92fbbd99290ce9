#!/usr/bin/env python3
"""Offline Kubernetes tooling for the Rust tests (tests/src/python.rs) and for people: render and
lint a Helm chart with the real Helm SDK, validate manifests against Kubernetes' JSON schemas,
validate custom resources against a CRD's openAPIV3Schema, and install and uninstall a chart
release on a real cluster (the end-to-end tests' `helm install`).

Every subcommand prints one JSON document on stdout and exits 0 when it could do its job (the
verdict is in the JSON); exit 2 means the tool itself could not run (bad input, chart failed to
render), exit 3 a missing Python package (the message says how to install it).

  k8s_tools.py helm-render CHART [--values FILE] [--name N] [--namespace NS]
  k8s_tools.py helm-lint CHART [--values FILE] [--strict] [--kube-version V] [--namespace NS]
  k8s_tools.py kube-validate --kubernetes-version 1.28.0 [--strict] [FILE|-]
  k8s_tools.py crd-validate --crd FILE [FILE|-]
  k8s_tools.py helm-yaml [FILE|-]
  k8s_tools.py helm-install CHART --name N --namespace NS --kubeconfig FILE [--kube-context C]
                            [--values FILE] [--create-namespace] [--wait] [--timeout SECONDS]
                            [--version V] [--plain-http]
      CHART: a chart directory, or oci://registry/path/chart with --version (as users install
      a release); --plain-http for a registry without TLS.
  k8s_tools.py helm-push CHART-DIR oci://registry/path [--plain-http]
      helm package + helm push: the chart as an OCI artifact, the way the release workflow
      publishes it.
  k8s_tools.py helm-uninstall --name N --namespace NS --kubeconfig FILE [--kube-context C]
                              [--wait] [--timeout SECONDS] [--ignore-not-found]

helm-install and helm-uninstall change the cluster the kubeconfig names; every other command is
offline. Their JSON says `ok` and the release (without its manifest and notes, which are printed
only with --manifest) or Helm's error.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from typing import Any

INSTALL_HINT = (
    "run scripts/install-test-deps.sh "
    "(or: python3 -m pip install -r scripts/requirements-test.txt)"
)

# Exit codes the Rust side relies on.
EXIT_TOOL_ERROR = 2
EXIT_MISSING_PACKAGE = 3


def need(module: str, package: str) -> Any:
    """Imports `module`, or exits with a message naming the PyPI package and how to install it."""
    try:
        return __import__(module)
    except ImportError as error:
        print(
            f"missing Python package {package!r} (import {module!r} failed: {error}); {INSTALL_HINT}",
            file=sys.stderr,
        )
        sys.exit(EXIT_MISSING_PACKAGE)


def fail(message: str) -> None:
    print(message, file=sys.stderr)
    sys.exit(EXIT_TOOL_ERROR)


def read_input(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def load_documents(text: str) -> list[dict[str, Any]]:
    yaml = need("yaml", "PyYAML")
    try:
        documents = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.YAMLError as error:
        fail(f"input is not valid YAML: {error}")
    for index, doc in enumerate(documents):
        if not isinstance(doc, dict):
            fail(f"document {index} is a {type(doc).__name__}, not a mapping")
    return documents


def load_values(path: str | None) -> dict[str, Any] | None:
    if path is None:
        return None
    yaml = need("yaml", "PyYAML")
    with open(path, encoding="utf-8") as handle:
        values = yaml.safe_load(handle) or {}
    if not isinstance(values, dict):
        fail(f"values file {path} is not a mapping")
    return values


def describe(doc: dict[str, Any]) -> str:
    metadata = doc.get("metadata") or {}
    return f"{doc.get('apiVersion')}/{doc.get('kind')} {metadata.get('name')}"


# --- Helm ------------------------------------------------------------------------------------


def helm_render(args: argparse.Namespace) -> dict[str, Any]:
    helm = need("helm_python", "helm-python-sdk")
    values = load_values(args.values)
    try:
        with helm.Chart.load(args.chart) as chart:
            # Render does not run the values schema by itself in every SDK version; install does.
            chart.validate_schema(chart.merge_values(values) if values is not None else None)
            rendered = chart.render(
                values=values, name=args.name, namespace=args.namespace, is_install=True
            )
            crds = [crd["data"] for crd in chart.crds]
    except helm.HelmError as error:
        return {"ok": False, "error": f"{type(error).__name__}: {error}"}
    # Templates in a stable order; NOTES.txt is text, not a manifest.
    manifests = {
        path: text
        for path, text in sorted(rendered.items())
        if not path.endswith("NOTES.txt") and text.strip()
    }
    notes = next((text for path, text in rendered.items() if path.endswith("NOTES.txt")), "")
    return {"ok": True, "manifests": manifests, "notes": notes, "crds": crds}


def helm_lint(args: argparse.Namespace) -> dict[str, Any]:
    helm = need("helm_python", "helm-python-sdk")
    values = load_values(args.values)
    try:
        report = helm.lint(
            args.chart,
            values,
            strict=args.strict,
            namespace=args.namespace,
            kube_version=args.kube_version,
        )
    except helm.HelmError as error:
        return {"ok": False, "error": f"{type(error).__name__}: {error}", "messages": []}
    severities = {0: "unknown", 1: "info", 2: "warning", 3: "error"}
    messages = [
        {
            "severity": severities.get(message.get("severity"), str(message.get("severity"))),
            "path": message.get("path", ""),
            "message": message.get("error", ""),
        }
        for message in report.get("messages") or []
    ]
    errors = list(report.get("errors") or [])
    failing = [m for m in messages if m["severity"] == "error"]
    if args.strict:
        failing += [m for m in messages if m["severity"] == "warning"]
    return {
        "ok": not errors and not failing,
        "charts": report.get("total_charts_linted", 0),
        "messages": messages,
        "errors": errors,
    }


# --- Kubernetes schemas ----------------------------------------------------------------------


def kube_validate(args: argparse.Namespace) -> dict[str, Any]:
    kv = need("kubernetes_validate", "kubernetes-validate")
    need("jsonschema", "jsonschema")
    from kubernetes_validate import utils

    documents = load_documents(read_input(args.file))
    # kubernetes-validate silently falls back to an older schema set for a version it lacks;
    # ask for one it ships, exactly.
    wanted = utils.major_minor(args.kubernetes_version.lstrip("v"))
    versions = sorted(set(utils.all_versions()), key=lambda v: [int(p) for p in v.split(".")])
    shipped = [utils.major_minor(version) for version in versions]
    if wanted not in shipped:
        fail(
            f"kubernetes-validate {kv.__version__} has no schemas for Kubernetes "
            f"{args.kubernetes_version}; it ships {', '.join(shipped)}"
        )
    results = []
    for doc in documents:
        entry: dict[str, Any] = {"object": describe(doc)}
        try:
            utils.validate(doc, args.kubernetes_version, args.strict)
            entry["status"] = "valid"
        except utils.SchemaNotFoundError as error:
            entry["status"] = "unknown-kind"
            entry["error"] = str(error)
        except utils.ValidationError as error:
            path = ".".join(str(p) for p in error.path)
            entry["status"] = "invalid"
            entry["error"] = f"{path}: {error.message}" if path else error.message
        results.append(entry)
    return {
        "kubernetes_version": args.kubernetes_version,
        "strict": args.strict,
        "latest_version": versions[-1],
        "versions": versions,
        "results": results,
    }


def openapi_to_jsonschema(schema: Any) -> Any:
    """A CRD's structural OpenAPI v3 schema as JSON Schema, the way the API server reads it:
    `nullable` allows null, `x-kubernetes-int-or-string` allows both, and objects with declared
    properties reject unknown fields (the API server drops them; `kubectl apply` with strict
    field validation refuses them, and a typo in an example should fail)."""
    if isinstance(schema, list):
        return [openapi_to_jsonschema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: openapi_to_jsonschema(value) for key, value in schema.items()}
    if out.pop("x-kubernetes-int-or-string", False):
        out.pop("type", None)
        out["anyOf"] = out.get("anyOf", []) + [{"type": "integer"}, {"type": "string"}]
    preserve = out.pop("x-kubernetes-preserve-unknown-fields", False)
    if "properties" in out and "additionalProperties" not in out and not preserve:
        out["additionalProperties"] = False
    if out.pop("nullable", False) and "type" in out:
        out["type"] = [out["type"], "null"]
    for key in [k for k in out if k.startswith("x-kubernetes-")]:
        del out[key]
    return out


def crd_validate(args: argparse.Namespace) -> dict[str, Any]:
    jsonschema = need("jsonschema", "jsonschema")
    crds = load_documents(read_input(args.crd))
    if len(crds) != 1 or crds[0].get("kind") != "CustomResourceDefinition":
        fail(f"{args.crd} must hold exactly one CustomResourceDefinition")
    crd = crds[0]
    group = crd["spec"]["group"]
    kind = crd["spec"]["names"]["kind"]
    validators = {}
    for version in crd["spec"]["versions"]:
        schema = copy.deepcopy(version["schema"]["openAPIV3Schema"])
        schema = openapi_to_jsonschema(schema)
        # apiVersion, kind and metadata are the API server's, not the CRD's, to check.
        schema.setdefault("properties", {})
        for field in ("apiVersion", "kind", "metadata"):
            schema["properties"].setdefault(field, {})
        validators[f"{group}/{version['name']}"] = jsonschema.Draft7Validator(schema)
    results = []
    for doc in load_documents(read_input(args.file)):
        entry: dict[str, Any] = {"object": describe(doc)}
        validator = validators.get(doc.get("apiVersion"))
        if doc.get("kind") != kind or validator is None:
            entry["status"] = "unknown-kind"
            entry["error"] = f"not a {kind} of {', '.join(sorted(validators))}"
        else:
            errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
            if errors:
                entry["status"] = "invalid"
                entry["errors"] = [
                    f"{'.'.join(str(p) for p in e.path) or '<root>'}: {e.message}" for e in errors
                ]
            else:
                entry["status"] = "valid"
        results.append(entry)
    return {"results": results}


def helm_yaml(args: argparse.Namespace) -> dict[str, Any]:
    """Reads a YAML mapping with Helm's parser (sigs.k8s.io/yaml, YAML 1.1 scalars: `no` and
    `on` are booleans), which is how Helm and kubectl read chart files and manifests."""
    helm = need("helm_python", "helm-python-sdk")
    try:
        return {"ok": True, "value": helm.values_from_yaml(read_input(args.file))}
    except helm.HelmError as error:
        return {"ok": False, "error": f"{type(error).__name__}: {error}"}


# --- Releases on a cluster ------------------------------------------------------------------


def helm_config(args: argparse.Namespace) -> Any:
    """A Helm SDK configuration for the kubeconfig (and context) given; release storage is
    Secrets in the release namespace, as the helm CLI keeps it."""
    helm = need("helm_python", "helm-python-sdk")
    return helm.Config(
        kubeconfig_path=args.kubeconfig,
        kube_context=args.kube_context,
        namespace=args.namespace,
    )


def release_summary(release: dict[str, Any], manifest: bool) -> dict[str, Any]:
    if manifest:
        return release
    return {key: value for key, value in release.items() if key not in ("manifest", "notes")}


def helm_install(args: argparse.Namespace) -> dict[str, Any]:
    """`helm install NAME CHART -n NS -f VALUES [--create-namespace] [--wait]`: the chart's
    crds/ first (skipped when the CRD exists), then its templates."""
    helm = need("helm_python", "helm-python-sdk")
    values = load_values(args.values)
    try:
        with helm_config(args) as config:
            release = config.install(
                args.chart,
                args.name,
                values,
                namespace=args.namespace,
                create_namespace=args.create_namespace,
                wait="watcher" if args.wait else None,
                timeout=args.timeout,
                chart_version=args.version,
                plain_http=args.plain_http,
            )
    except helm.HelmError as error:
        return {"ok": False, "error": f"{type(error).__name__}: {error}"}
    return {"ok": True, "release": release_summary(release, args.manifest)}


def helm_push(args: argparse.Namespace) -> dict[str, Any]:
    """`helm package CHART-DIR && helm push <package> REMOTE`."""
    import tempfile

    helm = need("helm_python", "helm-python-sdk")
    try:
        with tempfile.TemporaryDirectory() as scratch:
            package = helm.package(args.chart, destination=scratch)
            helm.push(package, args.remote, plain_http=args.plain_http)
            name = package.rsplit("/", 1)[-1]
    except helm.HelmError as error:
        return {"ok": False, "error": f"{type(error).__name__}: {error}"}
    return {"ok": True, "package": name}


def helm_uninstall(args: argparse.Namespace) -> dict[str, Any]:
    """`helm uninstall NAME -n NS [--wait]`: deletes what the release created (never the CRDs
    of crds/, which Helm does not track) and its history."""
    helm = need("helm_python", "helm-python-sdk")
    try:
        with helm_config(args) as config:
            result = config.uninstall(
                args.name,
                wait="watcher" if args.wait else None,
                timeout=args.timeout,
                ignore_not_found=args.ignore_not_found,
            )
    except helm.HelmError as error:
        return {"ok": False, "error": f"{type(error).__name__}: {error}"}
    release = result.get("release") or {}
    return {"ok": True, "info": result.get("info", ""), "release": release_summary(release, False)}


def add_cluster_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", required=True, help="release name")
    parser.add_argument("--namespace", required=True, help="release namespace")
    parser.add_argument("--kubeconfig", required=True, help="kubeconfig of the cluster")
    parser.add_argument("--kube-context", help="context of the kubeconfig (default: current)")
    parser.add_argument("--wait", action="store_true", help="wait for the resources (kstatus)")
    parser.add_argument("--timeout", type=int, help="seconds for the whole operation")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    render = commands.add_parser("helm-render", help="render a chart's templates offline")
    render.add_argument("chart")
    render.add_argument("--values")
    render.add_argument("--name", default="abstore-operator")
    render.add_argument("--namespace", default="abstore-system")
    render.set_defaults(run=helm_render)

    lint = commands.add_parser("helm-lint", help="helm lint")
    lint.add_argument("chart")
    lint.add_argument("--values")
    lint.add_argument("--strict", action="store_true")
    lint.add_argument("--kube-version")
    lint.add_argument("--namespace")
    lint.set_defaults(run=helm_lint)

    validate = commands.add_parser("kube-validate", help="validate manifests (kubernetes-validate)")
    validate.add_argument("--kubernetes-version", required=True)
    validate.add_argument("--strict", action="store_true")
    validate.add_argument("file", nargs="?", default="-")
    validate.set_defaults(run=kube_validate)

    crd = commands.add_parser("crd-validate", help="validate custom resources against a CRD")
    crd.add_argument("--crd", required=True)
    crd.add_argument("file", nargs="?", default="-")
    crd.set_defaults(run=crd_validate)

    yaml_read = commands.add_parser("helm-yaml", help="read a YAML mapping as Helm/kubectl do")
    yaml_read.add_argument("file", nargs="?", default="-")
    yaml_read.set_defaults(run=helm_yaml)

    install = commands.add_parser("helm-install", help="install a chart release on a cluster")
    install.add_argument("chart")
    install.add_argument("--values")
    install.add_argument("--create-namespace", action="store_true")
    install.add_argument("--manifest", action="store_true", help="also print manifest and notes")
    install.add_argument("--version", help="the chart version, for an oci:// chart")
    install.add_argument("--plain-http", action="store_true", help="the registry speaks HTTP")
    add_cluster_arguments(install)
    install.set_defaults(run=helm_install)

    push = commands.add_parser("helm-push", help="package a chart and push it to an OCI registry")
    push.add_argument("chart")
    push.add_argument("remote")
    push.add_argument("--plain-http", action="store_true", help="the registry speaks HTTP")
    push.set_defaults(run=helm_push)

    uninstall = commands.add_parser("helm-uninstall", help="uninstall a release from a cluster")
    uninstall.add_argument("--ignore-not-found", action="store_true")
    add_cluster_arguments(uninstall)
    uninstall.set_defaults(run=helm_uninstall)

    args = parser.parse_args()
    json.dump(args.run(args), sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
