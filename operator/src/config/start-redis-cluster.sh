#!/bin/sh
# Starts redis-server in a pod of a cluster-mode ABStore (spec.mode: cluster): the shared
# redis.conf plus this pod's lines (masterauth, the DNS name it announces to the cluster and to
# clients). The operator forms and repairs the cluster (CLUSTER MEET / ADDSLOTSRANGE / REPLICATE);
# this script never decides a role.
#
# The cluster state file (nodes.conf) records every peer's IP address, and pods get a new one
# when they are recreated: if every pod restarts at once (a node reboot), no one could reach
# anyone at the addresses it remembers. Each peer's hostname is recorded beside its address, so
# before starting, the addresses of the peers whose names resolve are rewritten to what they
# resolve to now.
set -eu
. "$(dirname "$0")/abstore-lib.sh"

: "${ABSTORE_CONFIG_DIR:=@@CONFIG_DIR@@}"
: "${ABSTORE_DATA_DIR:=@@DATA_DIR@@}"
: "${ABSTORE_RUNTIME_CONFIG:=$ABSTORE_DATA_DIR/@@REDIS_CONF@@}"
: "${ABSTORE_NODES_CONF:=$ABSTORE_DATA_DIR/@@CLUSTER_CONFIG_FILE@@}"
: "${POD_NAME:=$(hostname)}"
: "${ABSTORE_POD_DOMAIN:=@@REDIS_POD_DOMAIN@@}"
: "${ABSTORE_ANNOUNCE_HOST:=$POD_NAME.$ABSTORE_POD_DOMAIN}"
: "${ABSTORE_REDIS_SERVER:=redis-server}"
: "${ABSTORE_DRY_RUN:=no}"

# Prints nodes.conf with each peer's address replaced by what its hostname resolves to now.
# A line: <id> <ip>:<port>@<bus-port>,<hostname> <flags> ...; the `vars` line is kept as it is.
refresh_addresses() {
    while IFS= read -r line; do
        set -f
        # shellcheck disable=SC2086
        set -- $line
        set +f
        addr=${2:-}
        case "$addr" in
            *:*@*,?*)
                host=${addr##*,}
                old_ip=${addr%%:*}
                rest=${addr#*:}
                new_ip=$(getent ahostsv4 "$host" 2>/dev/null | awk 'NR == 1 { print $1 }') || new_ip=""
                if [ -n "$new_ip" ] && [ "$new_ip" != "$old_ip" ]; then
                    abstore_log "peer $host moved from $old_ip to $new_ip"
                    id=$1
                    shift 2
                    line="$id $new_ip:$rest $*"
                fi
                ;;
        esac
        printf '%s\n' "$line"
    done <"$ABSTORE_NODES_CONF"
}

if [ -s "$ABSTORE_NODES_CONF" ]; then
    tmp="$ABSTORE_NODES_CONF.tmp"
    refresh_addresses >"$tmp"
    mv "$tmp" "$ABSTORE_NODES_CONF"
fi

masterauth=$(cat "$ABSTORE_CREDENTIALS_DIR/@@REPLICATION_USER@@")
tmp="$ABSTORE_RUNTIME_CONFIG.tmp"
umask 077
{
    cat "$ABSTORE_CONFIG_DIR/@@REDIS_CONF@@"
    echo
    echo "# --- this pod, written by start-redis-cluster.sh ---"
    echo "masterauth \"$masterauth\""
    echo "cluster-announce-hostname $ABSTORE_ANNOUNCE_HOST"
    echo "cluster-preferred-endpoint-type hostname"
} >"$tmp"
mv "$tmp" "$ABSTORE_RUNTIME_CONFIG"

abstore_log "starting as cluster node $ABSTORE_ANNOUNCE_HOST"
if [ "$ABSTORE_DRY_RUN" = yes ]; then
    exit 0
fi
exec "$ABSTORE_REDIS_SERVER" "$ABSTORE_RUNTIME_CONFIG"
