#!/usr/bin/env bash
# Installs what `scripts/run.sh` needs to run ABStore locally: redis-server, redis-sentinel and
# redis-cli (Debian packages), and nothing that is already there. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/apt.sh

need_apt=()
command -v redis-server   >/dev/null 2>&1 || need_apt+=(redis-server)
command -v redis-sentinel >/dev/null 2>&1 || need_apt+=(redis-sentinel)
command -v redis-cli      >/dev/null 2>&1 || need_apt+=(redis-tools)
if [ ${#need_apt[@]} -gt 0 ]; then
  apt_install "${need_apt[@]}"
fi
