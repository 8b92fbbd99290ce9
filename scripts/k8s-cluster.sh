#!/usr/bin/env bash
# Sourced by scripts/test.sh (not run): a real Kubernetes for the end-to-end tests
# (tests/tests/e2e_*.rs), from the `../shared/k8s` kit next to the clone (or $ABSTORE_K8S_KIT):
# a v1.28 control plane and a node whose kubelet runs pods on containerd, all on loopback.
#
# `abstore_k8s_up` reuses a cluster that already runs (a developer's), or starts one with a fresh
# etcd and stops it again when the shell exits. It exports KUBEBUILDER_ASSETS and K8S_STATE (the
# tests read the cluster's kubeconfig from the kit's state, never from KUBECONFIG) and sets
# ABSTORE_E2E_REQUIRED=1 so the e2e tests fail instead of skipping. Without the kit it says so
# and the e2e tests skip; a kit that fails to start fails the run.

abstore_k8s_kit() {
  local repo kit
  repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  # $ABSTORE_K8S_KIT, else the kit beside the clone, else the machines' shared copy.
  for kit in ${ABSTORE_K8S_KIT:+"$ABSTORE_K8S_KIT"} "$repo/../shared/k8s" /work/shared/k8s; do
    if [ -x "$kit/k8s.sh" ]; then
      (cd "$kit" && pwd)
      return 0
    fi
  done
  return 1
}

abstore_k8s_as_root() {
  if [ "$(id -u)" -ne 0 ]; then sudo "$@"; else "$@"; fi
}

abstore_k8s_up() {
  local kit
  if ! kit=$(abstore_k8s_kit); then
    echo "k8s: no cluster kit (\$ABSTORE_K8S_KIT, ../shared/k8s, /work/shared/k8s): the e2e tests will be skipped (see README, 'Test it')"
    return 0
  fi
  export K8S_STATE=${K8S_STATE:-$HOME/.cache/abstore-k8s}
  local status
  # Captured first: `status | grep -q` would end the pipe early and, with pipefail, read as "not
  # running" (SIGPIPE), restarting a cluster someone is using.
  status=$(abstore_k8s_as_root env K8S_STATE="$K8S_STATE" "$kit/k8s.sh" status 2>/dev/null || true)
  if [[ $status == *"Ready=True"* ]]; then
    echo "k8s: reusing the cluster that runs in $K8S_STATE"
  else
    echo "k8s: starting a cluster with a node ($kit/k8s.sh up --node --fresh)"
    local started=$SECONDS
    if ! abstore_k8s_as_root env K8S_STATE="$K8S_STATE" "$kit/k8s.sh" up --node --fresh > "${TMPDIR:-/tmp}/abstore-k8s-up.log" 2>&1; then
      tail -n 40 "${TMPDIR:-/tmp}/abstore-k8s-up.log" >&2
      echo "k8s: the cluster did not start (log above)" >&2
      return 1
    fi
    echo "k8s: up in $((SECONDS - started)) s"
    _abstore_k8s_started_by_us=$kit
    trap abstore_k8s_down EXIT
  fi
  export KUBEBUILDER_ASSETS=$K8S_STATE/bin
  export ABSTORE_E2E_REQUIRED=1
}

abstore_k8s_down() {
  if [ -n "${_abstore_k8s_started_by_us:-}" ]; then
    echo "k8s: stopping the cluster"
    abstore_k8s_as_root env K8S_STATE="$K8S_STATE" "$_abstore_k8s_started_by_us/k8s.sh" down > /dev/null 2>&1 \
      || echo "k8s: 'k8s.sh down' failed; run it by hand" >&2
    _abstore_k8s_started_by_us=""
  fi
}
