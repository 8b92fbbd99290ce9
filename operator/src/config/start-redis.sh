#!/bin/sh
# Starts redis-server in an ABStore pod: the shared redis.conf plus this pod's lines (its DNS name
# to announce, masterauth, and `replicaof` unless it is the primary). Hard rule: never come up as
# a primary with an empty dataset while another node holds data.
#
# Who is the primary: what the sentinels report; if none answers, a peer that says it is a
# primary; if none does, pod 0 bootstraps as the primary and the others replicate it.
set -eu
. "$(dirname "$0")/abstore-lib.sh"

: "${ABSTORE_CONFIG_DIR:=@@CONFIG_DIR@@}"
: "${ABSTORE_DATA_DIR:=@@DATA_DIR@@}"
: "${ABSTORE_RUNTIME_CONFIG:=$ABSTORE_DATA_DIR/@@REDIS_CONF@@}"
: "${POD_NAME:=$(hostname)}"
: "${ABSTORE_ORDINAL:=${POD_NAME##*-}}"
: "${ABSTORE_POD_DOMAIN:=@@REDIS_POD_DOMAIN@@}"
: "${ABSTORE_ANNOUNCE_HOST:=$POD_NAME.$ABSTORE_POD_DOMAIN}"
: "${ABSTORE_ANNOUNCE_PORT:=@@REDIS_PORT@@}"
: "${ABSTORE_MASTER_NAME:=@@MASTER_NAME@@}"
: "${ABSTORE_SENTINEL_HOST:=@@SENTINEL_SERVICE@@}"
: "${ABSTORE_SENTINEL_PORT:=@@SENTINEL_PORT@@}"
: "${ABSTORE_SENTINEL_ATTEMPTS:=5}"
: "${ABSTORE_BOOTSTRAP_HOST:=@@BOOTSTRAP_HOST@@}"
: "${ABSTORE_BOOTSTRAP_PORT:=@@REDIS_PORT@@}"
: "${ABSTORE_PEERS:=@@REDIS_PEERS@@}"
: "${ABSTORE_REDIS_SERVER:=redis-server}"
: "${ABSTORE_DRY_RUN:=no}"

# Whether this pod's volume has ever held a dataset (an RDB snapshot or the AOF directory).
has_local_data() {
    [ -s "$ABSTORE_DATA_DIR/dump.rdb" ] || [ -d "$ABSTORE_DATA_DIR/appendonlydir" ]
}

# Prints "host port" of a peer that reports itself primary, or fails. Also remembers whether any
# peer has replicated data (a replication offset above 0) in peer_has_data.
peer_has_data=no
find_primary_peer() {
    _found=""
    for peer in $ABSTORE_PEERS; do
        host=${peer%:*}
        port=${peer##*:}
        [ "$host" = "$ABSTORE_ANNOUNCE_HOST" ] && [ "$port" = "$ABSTORE_ANNOUNCE_PORT" ] && continue
        role=$(abstore_peer_role @@EXPORTER_USER@@ "$host" "$port") || continue
        set -- $role
        [ "${2:-0}" -gt 0 ] 2>/dev/null && peer_has_data=yes
        [ "$1" = master ] && [ -z "$_found" ] && _found="$host $port"
    done
    [ -n "$_found" ] && echo "$_found"
}

primary=""
attempt=1
while [ "$attempt" -le "$ABSTORE_SENTINEL_ATTEMPTS" ]; do
    if primary=$(abstore_sentinel_primary @@REDIS_POD_SENTINEL_USER@@); then
        abstore_log "sentinels report primary $primary"
        break
    fi
    primary=""
    [ "$attempt" -lt "$ABSTORE_SENTINEL_ATTEMPTS" ] && sleep 1
    attempt=$((attempt + 1))
done

if [ -z "$primary" ]; then
    abstore_log "no sentinel at $ABSTORE_SENTINEL_HOST:$ABSTORE_SENTINEL_PORT knows '$ABSTORE_MASTER_NAME'; asking the other pods"
    if primary=$(find_primary_peer); then
        abstore_log "peer $primary says it is the primary"
    elif [ "$ABSTORE_ORDINAL" = 0 ]; then
        primary="$ABSTORE_ANNOUNCE_HOST $ABSTORE_ANNOUNCE_PORT"
        abstore_log "no primary anywhere: pod 0 bootstraps as the primary"
    else
        primary="$ABSTORE_BOOTSTRAP_HOST $ABSTORE_BOOTSTRAP_PORT"
        abstore_log "no primary anywhere: replicating the bootstrap primary $primary"
    fi
fi

set -- $primary
primary_host=$1
primary_port=$2
if [ "$primary_host" = "$ABSTORE_ANNOUNCE_HOST" ] && [ "$primary_port" = "$ABSTORE_ANNOUNCE_PORT" ]; then
    is_primary=yes
else
    is_primary=no
fi

if [ "$is_primary" = yes ] && ! has_local_data; then
    # A primary that restarted with an empty volume would make its replicas drop their data.
    find_primary_peer >/dev/null || true
    if [ "$peer_has_data" = yes ]; then
        abstore_log "refusing to start as an empty primary while other pods hold data; Sentinel will promote one of them, then this pod restarts as its replica"
        exit 1
    fi
fi

masterauth=$(cat "$ABSTORE_CREDENTIALS_DIR/@@REPLICATION_USER@@")
tmp="$ABSTORE_RUNTIME_CONFIG.tmp"
umask 077
{
    cat "$ABSTORE_CONFIG_DIR/@@REDIS_CONF@@"
    echo
    echo "# --- this pod, written by start-redis.sh ---"
    echo "masterauth \"$masterauth\""
    echo "replica-announce-ip $ABSTORE_ANNOUNCE_HOST"
    echo "replica-announce-port $ABSTORE_ANNOUNCE_PORT"
    if [ "$is_primary" = no ]; then
        echo "replicaof $primary_host $primary_port"
    fi
} >"$tmp"
mv "$tmp" "$ABSTORE_RUNTIME_CONFIG"

if [ "$is_primary" = yes ]; then
    abstore_log "starting as the primary ($ABSTORE_ANNOUNCE_HOST)"
else
    abstore_log "starting as a replica of $primary_host:$primary_port"
fi
if [ "$ABSTORE_DRY_RUN" = yes ]; then
    exit 0
fi
exec "$ABSTORE_REDIS_SERVER" "$ABSTORE_RUNTIME_CONFIG"
