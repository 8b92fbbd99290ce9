#!/bin/sh
# Liveness of a sentinel: it answers PING.
. "$(dirname "$0")/abstore-lib.sh"
: "${ABSTORE_LOCAL_HOST:=127.0.0.1}"
: "${ABSTORE_LOCAL_PORT:=@@SENTINEL_PORT@@}"
reply=$(abstore_cli @@SENTINEL_USER@@ "$ABSTORE_LOCAL_HOST" "$ABSTORE_LOCAL_PORT" PING 2>&1)
case "$reply" in
    *PONG*) exit 0 ;;
    *) echo "$reply" >&2; exit 1 ;;
esac
