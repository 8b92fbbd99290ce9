#!/usr/bin/env bash
# User-space instructions per `GET /track` of an abstore-api binary, counted by valgrind
# (cachegrind, no cache simulation): the API runs under valgrind with one worker thread on its own
# redis-server, oha sends 1 000 and then, on a fresh API, 21 000 requests (50 connections, unique
# uuids, the api bench's workload); the difference over 20 000 leaves out start-up. Unlike
# wall-clock rates this does not move with the CPU time another guest takes from a shared
# machine, so it compares two builds within about 1 %. Kernel time (loopback TCP, a third of the
# API's CPU) is not counted, and valgrind hides SHA-NI, so SHA-1 counts as its software form.
#
#   scripts/bench/api_instructions.sh [path/to/abstore-api ...]
#   (default: target/release/abstore-api; needs valgrind, redis-server and oha on PATH)
set -euo pipefail
binaries=("$@")
[ ${#binaries[@]} -gt 0 ] || binaries=(target/release/abstore-api)
for tool in valgrind redis-server oha curl; do
  command -v "$tool" >/dev/null || { echo "api_instructions.sh needs $tool on PATH" >&2; exit 1; }
done
work=$(mktemp -d)
redis_port=$((20000 + RANDOM % 20000))
api_port=$((redis_port + 1))
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --dir "$work" \
  --daemonize yes --pidfile "$work/redis.pid" >/dev/null
cleanup() { kill "$(cat "$work/redis.pid")" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
for i in $(seq 100); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done

# Instructions of one API process that answered $2 requests.
instructions() {
  local binary=$1 requests=$2
  redis-cli -p "$redis_port" flushall >/dev/null
  valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null \
    "$binary" --redis-url "redis://127.0.0.1:$redis_port" --listen "127.0.0.1:$api_port" \
    --rate-limit 1000000000 --worker-threads 1 >"$work/api.log" 2>&1 &
  local pid=$!
  for i in $(seq 600); do
    curl -sf "http://127.0.0.1:$api_port/readyz" >/dev/null && break
    kill -0 "$pid" 2>/dev/null || { cat "$work/api.log" >&2; exit 1; }
    sleep 0.1
  done
  oha --no-tui -n "$requests" -c 50 --rand-regex-url \
    "http://127.0.0.1:$api_port/track\?experiment=flag-(1?[0-9])&variant=(control|treatment)&event=participate&uuid=[0-9a-f]{32}" \
    >"$work/oha.txt" 2>&1 || { cat "$work/oha.txt" >&2; exit 1; }
  kill -TERM "$pid"
  wait "$pid" || true
  local counted
  counted=$(redis-cli -p "$redis_port" --scan --pattern '*:ec:*' \
    | xargs -r redis-cli -p "$redis_port" mget | paste -sd+ | bc)
  [ "$counted" = "$requests" ] || { echo "$binary: $requests requests, $counted counted" >&2; exit 1; }
  sed -n 's/.*I *refs: *\([0-9,]*\).*/\1/p' "$work/api.log" | tr -d ,
}

for binary in "${binaries[@]}"; do
  small=$(instructions "$binary" 1000)
  large=$(instructions "$binary" 21000)
  echo "$binary: $(( (large - small) / 20000 )) instructions per /track request"
done
