#!/bin/sh
# Liveness of a Redis pod: the server answers PING (loading a big dataset or waiting for its
# primary still counts as alive; restarting it would only start the load over).
. "$(dirname "$0")/abstore-lib.sh"
: "${ABSTORE_LOCAL_HOST:=127.0.0.1}"
: "${ABSTORE_LOCAL_PORT:=@@REDIS_PORT@@}"
reply=$(abstore_cli @@EXPORTER_USER@@ "$ABSTORE_LOCAL_HOST" "$ABSTORE_LOCAL_PORT" PING 2>&1)
case "$reply" in
    *PONG* | *LOADING* | *MASTERDOWN*) exit 0 ;;
    *) echo "$reply" >&2; exit 1 ;;
esac
