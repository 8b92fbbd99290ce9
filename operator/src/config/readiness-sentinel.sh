#!/bin/sh
# Readiness of a sentinel: it monitors the store's primary (clients ask the Service for it).
. "$(dirname "$0")/abstore-lib.sh"
: "${ABSTORE_LOCAL_HOST:=127.0.0.1}"
: "${ABSTORE_LOCAL_PORT:=@@SENTINEL_PORT@@}"
: "${ABSTORE_MASTER_NAME:=@@MASTER_NAME@@}"
ABSTORE_SENTINEL_HOST=$ABSTORE_LOCAL_HOST
ABSTORE_SENTINEL_PORT=$ABSTORE_LOCAL_PORT
abstore_sentinel_primary @@SENTINEL_USER@@ >/dev/null || {
    echo "this sentinel does not monitor '$ABSTORE_MASTER_NAME'" >&2
    exit 1
}
