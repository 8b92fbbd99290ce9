#!/bin/sh
# Readiness of a Redis pod: not loading, and a replica must have a working link to its primary
# and no sync in progress (before that it would serve stale or no data).
. "$(dirname "$0")/abstore-lib.sh"
: "${ABSTORE_LOCAL_HOST:=127.0.0.1}"
: "${ABSTORE_LOCAL_PORT:=@@REDIS_PORT@@}"
info=$(abstore_cli @@EXPORTER_USER@@ "$ABSTORE_LOCAL_HOST" "$ABSTORE_LOCAL_PORT" INFO replication persistence 2>&1) || {
    echo "$info" >&2
    exit 1
}
info=$(printf '%s\n' "$info" | tr -d '\r')
field() {
    printf '%s\n' "$info" | sed -n "s/^$1://p" | head -n 1
}
if [ "$(field loading)" != 0 ]; then
    echo "loading the dataset" >&2
    exit 1
fi
case "$(field role)" in
    master) exit 0 ;;
    slave)
        if [ "$(field master_link_status)" = up ] && [ "$(field master_sync_in_progress)" = 0 ]; then
            exit 0
        fi
        echo "replica not in sync: master_link_status=$(field master_link_status) master_sync_in_progress=$(field master_sync_in_progress)" >&2
        exit 1
        ;;
    *) echo "unexpected INFO: $info" >&2; exit 1 ;;
esac
