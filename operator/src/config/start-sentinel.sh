#!/bin/sh
# Starts redis-sentinel in an ABStore pod: the shared sentinel.conf, this sentinel's announced DNS
# name, `sentinel monitor` of the current primary, the per-master settings, and the password of
# the sentinel user as auth-pass (to the data nodes) and sentinel-pass (to the other sentinels).
# Who may ask this sentinel what is in the sentinels' ACL file (sentinel.conf's `aclfile`). The primary is what the other sentinels report; if none answers, a Redis pod
# that says it is a primary; if none does, the bootstrap primary (Redis pod 0).
set -eu
. "$(dirname "$0")/abstore-lib.sh"

: "${ABSTORE_CONFIG_DIR:=@@CONFIG_DIR@@}"
: "${ABSTORE_DATA_DIR:=@@DATA_DIR@@}"
: "${ABSTORE_RUNTIME_CONFIG:=$ABSTORE_DATA_DIR/@@SENTINEL_CONF@@}"
: "${POD_NAME:=$(hostname)}"
: "${ABSTORE_POD_DOMAIN:=@@SENTINEL_POD_DOMAIN@@}"
: "${ABSTORE_ANNOUNCE_HOST:=$POD_NAME.$ABSTORE_POD_DOMAIN}"
: "${ABSTORE_ANNOUNCE_PORT:=}"
: "${ABSTORE_MASTER_NAME:=@@MASTER_NAME@@}"
: "${ABSTORE_QUORUM:=@@QUORUM@@}"
: "${ABSTORE_SENTINEL_HOST:=@@SENTINEL_SERVICE@@}"
: "${ABSTORE_SENTINEL_PORT:=@@SENTINEL_PORT@@}"
: "${ABSTORE_SENTINEL_ATTEMPTS:=3}"
: "${ABSTORE_BOOTSTRAP_HOST:=@@BOOTSTRAP_HOST@@}"
: "${ABSTORE_BOOTSTRAP_PORT:=@@REDIS_PORT@@}"
: "${ABSTORE_PEERS:=@@REDIS_PEERS@@}"
: "${ABSTORE_REDIS_SENTINEL:=redis-sentinel}"
: "${ABSTORE_DRY_RUN:=no}"

primary=""
attempt=1
while [ "$attempt" -le "$ABSTORE_SENTINEL_ATTEMPTS" ]; do
    if primary=$(abstore_sentinel_primary @@SENTINEL_USER@@); then
        abstore_log "other sentinels report primary $primary"
        break
    fi
    primary=""
    [ "$attempt" -lt "$ABSTORE_SENTINEL_ATTEMPTS" ] && sleep 1
    attempt=$((attempt + 1))
done
if [ -z "$primary" ]; then
    for peer in $ABSTORE_PEERS; do
        host=${peer%:*}
        port=${peer##*:}
        role=$(abstore_peer_role @@SENTINEL_USER@@ "$host" "$port") || continue
        set -- $role
        if [ "$1" = master ]; then
            primary="$host $port"
            abstore_log "Redis pod $primary says it is the primary"
            break
        fi
    done
fi
if [ -z "$primary" ]; then
    primary="$ABSTORE_BOOTSTRAP_HOST $ABSTORE_BOOTSTRAP_PORT"
    abstore_log "no primary known: monitoring the bootstrap primary $primary"
fi
set -- $primary

# Keep this sentinel's id across restarts, so the others do not count it twice.
myid=""
if [ -f "$ABSTORE_RUNTIME_CONFIG" ]; then
    myid=$(grep '^sentinel myid ' "$ABSTORE_RUNTIME_CONFIG" | head -n 1 || true)
fi

auth_pass=$(cat "$ABSTORE_CREDENTIALS_DIR/@@SENTINEL_USER@@")
tmp="$ABSTORE_RUNTIME_CONFIG.tmp"
umask 077
{
    cat "$ABSTORE_CONFIG_DIR/@@SENTINEL_CONF@@"
    echo
    echo "# --- this sentinel, written by start-sentinel.sh ---"
    [ -n "$myid" ] && echo "$myid"
    echo "sentinel announce-ip $ABSTORE_ANNOUNCE_HOST"
    [ -n "$ABSTORE_ANNOUNCE_PORT" ] && echo "sentinel announce-port $ABSTORE_ANNOUNCE_PORT"
    echo "sentinel monitor $ABSTORE_MASTER_NAME $1 $2 $ABSTORE_QUORUM"
    cat "$ABSTORE_CONFIG_DIR/@@SENTINEL_MONITOR_CONF@@"
    echo "sentinel auth-pass $ABSTORE_MASTER_NAME \"$auth_pass\""
    echo "sentinel sentinel-pass \"$auth_pass\""
} >"$tmp"
mv "$tmp" "$ABSTORE_RUNTIME_CONFIG"

if [ "$ABSTORE_DRY_RUN" = yes ]; then
    exit 0
fi
exec "$ABSTORE_REDIS_SENTINEL" "$ABSTORE_RUNTIME_CONFIG"
