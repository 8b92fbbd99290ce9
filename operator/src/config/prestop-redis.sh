#!/bin/sh
# preStop hook of the Redis pods: a primary that is about to stop hands over to a replica without
# losing an acknowledged write, as the operator's planned switchover does (rollout.rs). Sentinel
# promotes without pausing the old primary, so every write acknowledged here between the
# promotion and this node's demotion would be discarded by its resync. Hence: pause writes, wait
# until every connected replica has acknowledged the whole replication stream (Sentinel picks the
# replica by its own, older view of their offsets, so all of them, not one), ask Sentinel to fail
# over, and as soon as the sentinels name a new primary make this node its replica, before the
# pause ends. The writes held by the pause then fail with READONLY and clients resend them to
# the new primary. Everything is bounded by ABSTORE_PRESTOP_TIMEOUT (the pod's
# terminationGracePeriodSeconds is longer); whatever fails before a promotion leaves this node
# the primary, unpaused, as if no hook had run.
set -u
. "$(dirname "$0")/abstore-lib.sh"

: "${ABSTORE_LOCAL_HOST:=127.0.0.1}"
: "${ABSTORE_LOCAL_PORT:=@@REDIS_PORT@@}"
: "${POD_NAME:=$(hostname)}"
: "${ABSTORE_POD_DOMAIN:=@@REDIS_POD_DOMAIN@@}"
# How the sentinels name this node: what start-redis.sh announces.
: "${ABSTORE_ANNOUNCE_HOST:=$POD_NAME.$ABSTORE_POD_DOMAIN}"
: "${ABSTORE_ANNOUNCE_PORT:=@@REDIS_PORT@@}"
: "${ABSTORE_MASTER_NAME:=@@MASTER_NAME@@}"
: "${ABSTORE_SENTINEL_HOST:=@@SENTINEL_SERVICE@@}"
: "${ABSTORE_SENTINEL_PORT:=@@SENTINEL_PORT@@}"
: "${ABSTORE_PRESTOP_TIMEOUT:=@@PRESTOP_TIMEOUT@@}"

# ROLE and INFO as the exporter, read-only like the probes; the pause and the demotion as the
# one role of the pod allowed them (config::PRESTOP_ROLE); the sentinels as the pods ask them.
observer=@@EXPORTER_USER@@
actor=@@PRESTOP_USER@@
asker=@@REDIS_POD_SENTINEL_USER@@

# Milliseconds since the epoch (whole seconds where date has no %N).
now_ms() {
    _ns=$(date +%s%N 2>/dev/null)
    case "$_ns" in
        '' | *[!0-9]*) echo $(($(date +%s) * 1000)) ;;
        *) echo $((_ns / 1000000)) ;;
    esac
}

# The interval between two polls: a tenth of a second where sleep takes fractions.
nap() {
    sleep 0.1 2>/dev/null || sleep 1
}

started=$(now_ms)
# The pause ends here at the latest, and every wait before it, so the hook ends within
# ABSTORE_PRESTOP_TIMEOUT + 2 × ABSTORE_CLI_TIMEOUT seconds (the calls of its last round).
deadline=$((started + ABSTORE_PRESTOP_TIMEOUT * 1000))
# Waits stop this long before the deadline, so that the calls that follow a wait (asking a
# sentinel, the new primary's ROLE, then REPLICAOF, each up to ABSTORE_CLI_TIMEOUT) demote this
# node before its pause ends: a pause that ran out first would let writes through to be lost.
guard=$(((3 * ABSTORE_CLI_TIMEOUT + 1) * 1000))
# Replicas still in their initial sync are waited for (unpaused) at most half the budget.
prepare_deadline=$((started + ABSTORE_PRESTOP_TIMEOUT * 500))

# local_cli USER ARG...: one command to this node.
local_cli() {
    _user=$1
    shift
    abstore_cli "$_user" "$ABSTORE_LOCAL_HOST" "$ABSTORE_LOCAL_PORT" "$@"
}

# Reads this node's INFO replication: `end` (master_repl_offset), `replica_count`,
# `replica_addrs` (" host:port " each), `not_online` and `behind` (which replicas are not
# streaming, or have not acknowledged offset `end`). Fails when the node does not answer.
scan_replicas() {
    _info=$(local_cli "$observer" INFO replication 2>/dev/null) || return 1
    _info=$(printf '%s\n' "$_info" | tr -d '\r')
    end=$(printf '%s\n' "$_info" | sed -n 's/^master_repl_offset://p' | head -n 1)
    # slave<n>:ip=<host>,port=<port>,state=<state>,offset=<acknowledged offset>,lag=<s>
    _list=$(printf '%s\n' "$_info" | sed -n 's/^slave[0-9]*:ip=\([^,]*\),port=\([^,]*\),state=\([^,]*\),offset=\([^,]*\),.*/\1:\2 \3 \4/p')
    replica_count=0
    replica_addrs=" "
    not_online=""
    behind=""
    _ifs=$IFS
    IFS='
'
    for _line in $_list; do
        IFS=$_ifs
        set -- $_line
        replica_count=$((replica_count + 1))
        replica_addrs="$replica_addrs$1 "
        [ "$2" = online ] || not_online="$not_online $1 ($2)"
        [ "$3" = "$end" ] || behind="$behind $1 (at $3)"
    done
    IFS=$_ifs
}

resume_writes() {
    if ! _reply=$(local_cli "$actor" CLIENT UNPAUSE 2>&1); then
        abstore_log "CLIENT UNPAUSE failed ($_reply); the pause ends by itself at the hook's deadline"
    fi
}

role=$(abstore_peer_role "$observer" "$ABSTORE_LOCAL_HOST" "$ABSTORE_LOCAL_PORT") || {
    abstore_log "this node does not answer ROLE; nothing to hand over"
    exit 0
}
set -- $role
if [ "$1" != master ]; then
    abstore_log "this node is a replica; nothing to hand over"
    exit 0
fi
if ! scan_replicas; then
    abstore_log "this node does not answer INFO replication; stopping as the primary"
    exit 0
fi
if [ "$replica_count" -eq 0 ]; then
    abstore_log "no replica is connected; nothing to fail over to, stopping as the primary"
    exit 0
fi

# Sentinel promotes replicas whose link broke only seconds ago; one in its initial sync would
# lose nearly everything. Wait for them first, without pausing anything.
while [ -n "$not_online" ]; do
    if [ "$(now_ms)" -ge "$prepare_deadline" ]; then
        abstore_log "replicas not streaming yet:$not_online; no failover, stopping as the primary"
        exit 0
    fi
    nap
    scan_replicas || {
        abstore_log "this node stopped answering INFO replication; stopping as the primary"
        exit 0
    }
    if [ "$replica_count" -eq 0 ]; then
        abstore_log "no replica is connected any more; stopping as the primary"
        exit 0
    fi
done

paused=no       # this hook holds a CLIENT PAUSE on the node
requested=no    # a SENTINEL FAILOVER of ours may be under way (accepted, or unanswered)
inprog=no       # the sentinels answered that a failover is already under way
promoted=""     # a new primary the sentinels named that this node has not managed to follow
next_request=0  # when SENTINEL FAILOVER may be asked again after INPROG
waiting="the replicas to catch up"

# stop_as_primary MESSAGE: releases the pause if this hook holds one, logs, and ends the hook.
# Only for states in which no promotion is known to have happened.
stop_as_primary() {
    if [ "$paused" = yes ]; then
        resume_writes
        abstore_log "$1; writes resumed, stopping as the primary"
    else
        abstore_log "$1; stopping as the primary"
    fi
    exit 0
}

# caught_up: at least one replica is connected, every replica connected at the pause
# (`expected`) still is, and every connected replica is online with an acknowledged offset equal
# to this node's, which no longer moves with writes while they are paused. Otherwise `waiting`
# says what is missing.
caught_up() {
    scan_replicas || {
        waiting="this node to answer INFO replication"
        return 1
    }
    _missing=""
    for _addr in $expected; do
        case "$replica_addrs" in
            *" $_addr "*) ;;
            *) _missing="$_missing $_addr (disconnected)" ;;
        esac
    done
    if [ "$replica_count" -eq 0 ]; then
        waiting="a replica to connect"
        return 1
    fi
    waiting="the replicas to catch up with offset $end:$not_online$behind$_missing"
    [ -z "$not_online$behind$_missing" ]
}

# One loop, polled: the sentinels are watched in every state, so that whichever failover
# promotes another node (ours, or one already under way), this node follows it at once.
while :; do
    if [ "$(now_ms)" -ge $((deadline - guard)) ]; then
        if [ -n "$promoted" ]; then
            # Unpausing would acknowledge writes that the resync to the new primary discards.
            abstore_log "the sentinels promoted $promoted but this node could not become its replica; writes stay paused until the pod stops"
            exit 0
        fi
        stop_as_primary "no failover within the ${ABSTORE_PRESTOP_TIMEOUT}s budget (waited for $waiting)"
    fi

    if named=$(abstore_sentinel_primary "$asker"); then
        set -- $named
        if [ "$1" != "$ABSTORE_ANNOUNCE_HOST" ] || [ "$2" != "$ABSTORE_ANNOUNCE_PORT" ]; then
            if [ "$paused" = no ]; then
                # SENTINEL FAILOVER moves whichever node the sentinels call the primary: a stale
                # primary they already replaced leaves its demotion to them.
                abstore_log "the sentinels name $1:$2 as the primary, not this node ($ABSTORE_ANNOUNCE_HOST:$ABSTORE_ANNOUNCE_PORT); no failover"
                exit 0
            fi
            # Another node was promoted while this one is paused: follow it before the pause
            # ends, once it really answers as a primary (never on a stale sentinel's word).
            if new_role=$(abstore_peer_role "$observer" "$1" "$2") && [ "${new_role%% *}" = master ]; then
                promoted="$1:$2"
                if reply=$(local_cli "$actor" REPLICAOF "$1" "$2" 2>&1); then
                    demoted_at=$(now_ms)
                    resume_writes
                    abstore_log "demoted: this node is a replica of $promoted; writes were paused $((demoted_at - paused_at)) ms and those held are answered READONLY"
                    exit 0
                fi
                abstore_log "REPLICAOF $1 $2 failed ($reply); retrying"
            else
                waiting="$1:$2, which the sentinels name, to answer as the primary"
            fi
            nap
            continue
        fi
    elif [ "$paused" = no ]; then
        stop_as_primary "no sentinel at $ABSTORE_SENTINEL_HOST:$ABSTORE_SENTINEL_PORT names a primary of '$ABSTORE_MASTER_NAME'; no failover"
    fi

    if [ "$requested" = yes ]; then
        waiting="the sentinels to name the new primary"
        nap
        continue
    fi

    if [ "$paused" = no ]; then
        paused_at=$(now_ms)
        # Until the deadline, never beyond: the hook ends the pause earlier on every path but
        # one (a promotion this node could not follow), where the pod stops paused.
        if ! reply=$(local_cli "$actor" CLIENT PAUSE $((deadline - paused_at)) WRITE 2>&1); then
            # The pause may have been applied with its reply lost.
            resume_writes
            abstore_log "CLIENT PAUSE failed ($reply); no failover without it, stopping as the primary"
            exit 0
        fi
        paused=yes
        expected=$replica_addrs
        abstore_log "writes paused; waiting for every replica to acknowledge the whole stream"
    fi

    if ! caught_up || [ "$(now_ms)" -lt "$next_request" ]; then
        nap
        continue
    fi

    reply=$(abstore_cli "$asker" "$ABSTORE_SENTINEL_HOST" "$ABSTORE_SENTINEL_PORT" SENTINEL FAILOVER "$ABSTORE_MASTER_NAME" 2>&1)
    status=$?
    if [ "$status" -eq 0 ]; then
        requested=yes
        abstore_log "failover requested with every replica at offset $end; waiting for the sentinels to name the new primary"
        continue
    fi
    if [ "$status" -eq 124 ]; then
        # No answer in time: the failover may have started, so writes stay paused.
        requested=yes
        abstore_log "SENTINEL FAILOVER got no answer in ${ABSTORE_CLI_TIMEOUT}s; watching for a new primary as if it had started"
        continue
    fi
    case "$reply" in
        *INPROG*)
            # A failover of this primary is already under way (someone else's switchover, or the
            # sentinels still finishing the one that promoted this node): writes stay paused, so
            # that if it promotes another node this one follows at once; if it ends with this
            # node still the primary, ask again.
            [ "$inprog" = yes ] || abstore_log "a failover is already under way ($reply); writes stay paused, asking again each second"
            inprog=yes
            next_request=$(($(now_ms) + 1000))
            waiting="the failover already under way to end"
            ;;
        *NOGOODSLAVE*)
            # The sentinels consider no replica fit yet (right after a crash failover, which is
            # when a rollout may run this). Nothing is under way, so writes flow meanwhile.
            resume_writes
            paused=no
            abstore_log "Sentinel cannot fail over yet ($reply); writes resumed, retrying"
            waiting="a replica the sentinels consider fit ($reply)"
            sleep 1
            ;;
        *)
            stop_as_primary "SENTINEL FAILOVER was refused ($reply)"
            ;;
    esac
done
