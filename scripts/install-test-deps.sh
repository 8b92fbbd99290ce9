#!/usr/bin/env bash
# Installs what the test suite and the local run need, and nothing that is already there.
# Idempotent: safe to run on every CI run and every `scripts/test.sh`.
set -euo pipefail

need_apt=()
command -v redis-server   >/dev/null 2>&1 || need_apt+=(redis-server)
command -v redis-sentinel >/dev/null 2>&1 || need_apt+=(redis-sentinel)
command -v redis-cli      >/dev/null 2>&1 || need_apt+=(redis-tools)
command -v redis-benchmark >/dev/null 2>&1 || need_apt+=(redis-tools)

if [ ${#need_apt[@]} -gt 0 ]; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  echo "install-test-deps: apt-get install ${need_apt[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

# The Debian package may start a system redis on 6379; the tests use their own ports, so it is
# harmless, but say what versions the run uses.
echo "install-test-deps: $(redis-server --version | cut -d' ' -f1-3)"
