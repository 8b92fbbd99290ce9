# Shared by the ABStore pod scripts (sourced, not run): redis-cli with TLS, a timeout, and
# authentication as a built-in role from its mounted password file (the default user is off).
# Every setting comes from an environment variable with the in-pod default, so tests can run the
# scripts against loopback servers.

: "${ABSTORE_REDIS_CLI:=redis-cli}"
: "${ABSTORE_CLI_TIMEOUT:=3}"
: "${ABSTORE_TLS:=@@TLS@@}"
: "${ABSTORE_TLS_CA_FILE:=@@TLS_CA_FILE@@}"
: "${ABSTORE_CREDENTIALS_DIR:=@@CREDENTIALS_DIR@@}"

abstore_log() {
    echo "abstore: $*" >&2
}

# abstore_cli USER HOST PORT ARG...: runs one command as USER ("" for none) and prints the raw
# reply. Fails when the server cannot be reached in time or answers with an error.
abstore_cli() {
    _abstore_user=$1
    _abstore_host=$2
    _abstore_port=$3
    shift 3
    set -- -h "$_abstore_host" -p "$_abstore_port" --raw -e "$@"
    if [ "$ABSTORE_TLS" = yes ]; then
        set -- --tls --cacert "$ABSTORE_TLS_CA_FILE" "$@"
    fi
    if [ -n "$_abstore_user" ]; then
        # The password goes through the environment, never the command line (ps would show it).
        REDISCLI_AUTH=$(cat "$ABSTORE_CREDENTIALS_DIR/$_abstore_user") || return 1
        export REDISCLI_AUTH
        set -- --user "$_abstore_user" --no-auth-warning "$@"
    else
        unset REDISCLI_AUTH
    fi
    if command -v timeout >/dev/null 2>&1; then
        timeout "$ABSTORE_CLI_TIMEOUT" "$ABSTORE_REDIS_CLI" "$@" </dev/null
    else
        "$ABSTORE_REDIS_CLI" "$@" </dev/null
    fi
}

# abstore_sentinel_primary USER: "host port" of the primary the sentinels report (asked as
# USER: the sentinels' default user is off too), or fails.
abstore_sentinel_primary() {
    _abstore_reply=$(abstore_cli "$1" "$ABSTORE_SENTINEL_HOST" "$ABSTORE_SENTINEL_PORT" \
        SENTINEL GET-MASTER-ADDR-BY-NAME "$ABSTORE_MASTER_NAME" 2>/dev/null) || return 1
    _abstore_reply=$(printf '%s\n' "$_abstore_reply" | tr -d '\r' | tr '\n' ' ')
    set -- $_abstore_reply
    [ "$#" -eq 2 ] || return 1
    echo "$1 $2"
}

# abstore_peer_role USER HOST PORT: "master <offset>" or "slave <offset>", or fails.
abstore_peer_role() {
    _abstore_reply=$(abstore_cli "$1" "$2" "$3" ROLE 2>/dev/null) || return 1
    _abstore_reply=$(printf '%s\n' "$_abstore_reply" | tr -d '\r' | tr '\n' ' ')
    set -- $_abstore_reply
    case "${1:-}" in
        master) echo "master ${2:-0}" ;;
        slave) echo "slave ${5:-0}" ;;
        *) return 1 ;;
    esac
}
