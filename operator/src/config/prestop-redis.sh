#!/bin/sh
# preStop hook of the Redis pods: a primary that is about to stop asks Sentinel to fail over
# first and waits (bounded) until it is a replica, so a rollout or drain loses no acknowledged
# writes and clients see a switchover instead of a down-after timeout.
set -u
. "$(dirname "$0")/abstore-lib.sh"

: "${ABSTORE_LOCAL_HOST:=127.0.0.1}"
: "${ABSTORE_LOCAL_PORT:=@@REDIS_PORT@@}"
: "${ABSTORE_MASTER_NAME:=@@MASTER_NAME@@}"
: "${ABSTORE_SENTINEL_HOST:=@@SENTINEL_SERVICE@@}"
: "${ABSTORE_SENTINEL_PORT:=@@SENTINEL_PORT@@}"
: "${ABSTORE_PRESTOP_TIMEOUT:=@@PRESTOP_TIMEOUT@@}"

role=$(abstore_cli @@EXPORTER_USER@@ "$ABSTORE_LOCAL_HOST" "$ABSTORE_LOCAL_PORT" ROLE 2>/dev/null) || exit 0
set -- $(printf '%s\n' "$role" | tr -d '\r')
[ "${1:-}" = master ] || exit 0
# ROLE of a primary: role, offset, then host, port and offset of each connected replica.
if [ "$#" -lt 5 ]; then
    abstore_log "no replica is connected; nothing to fail over to"
    exit 0
fi

# A failover that is still finishing (INPROG), or replicas still resyncing after one
# (NOGOODSLAVE), are waited out: a rollout right after a crash failover is exactly when this runs.
waited=0
while :; do
    reply=$(abstore_cli @@REDIS_POD_SENTINEL_USER@@ "$ABSTORE_SENTINEL_HOST" "$ABSTORE_SENTINEL_PORT" SENTINEL FAILOVER "$ABSTORE_MASTER_NAME" 2>&1) && break
    case "$reply" in
        *INPROG* | *NOGOODSLAVE*)
            if [ "$waited" -ge "$ABSTORE_PRESTOP_TIMEOUT" ]; then
                abstore_log "no failover possible after ${ABSTORE_PRESTOP_TIMEOUT}s ($reply); stopping as the primary"
                exit 0
            fi
            sleep 1
            waited=$((waited + 1))
            ;;
        *)
            abstore_log "SENTINEL FAILOVER was refused ($reply); stopping as the primary"
            exit 0
            ;;
    esac
done
while [ "$waited" -lt "$ABSTORE_PRESTOP_TIMEOUT" ]; do
    role=$(abstore_peer_role @@EXPORTER_USER@@ "$ABSTORE_LOCAL_HOST" "$ABSTORE_LOCAL_PORT") || exit 0
    set -- $role
    if [ "$1" != master ]; then
        abstore_log "failed over; this pod is a replica now"
        exit 0
    fi
    sleep 1
    waited=$((waited + 1))
done
abstore_log "still the primary after ${ABSTORE_PRESTOP_TIMEOUT}s; stopping anyway"
exit 0
