#!/usr/bin/env bash
# Hosts of their own on one machine: network namespaces joined by veth pairs
# to a bridge, for running eventbench across "hosts" (docs/src/hosts.md).
#
#   scripts/hosts.sh up [HOST...]     make the topology (default hosts: redis control w1 w2)
#   scripts/hosts.sh down             remove it (every namespace of the prefix)
#   scripts/hosts.sh status           list it: namespace, address, link state
#   scripts/hosts.sh addr HOST        print HOST's address
#   scripts/hosts.sh link HOST up|down   plug or unplug HOST's cable (at the bridge)
#
# Each host is a namespace `$EB_HOSTS_PREFIX-HOST` with one interface, eth0,
# whose peer sits in the hub namespace `$EB_HOSTS_PREFIX-hub`, on its bridge
# br0. The bridge lives in a namespace too, so nothing is added to the
# machine's own network stack, and the addresses (198.18.0.0/15, the
# benchmarking range, RFC 2544) exist only inside the namespaces. Addresses:
# redis .2, control .3, coord .4, valkey .5, wN .(10+N), any other name .(100 + its
# position in the list), in $EB_HOSTS_NET (default 198.18.0). Two prefixes
# are two separate networks, so tests running at once use a prefix each and
# may use the same addresses.
#
# Names: every host resolves every other by its name (and the aliases of
# $EB_HOSTS_ALIASES, e.g. "eventbench-control=control"), through
# /etc/netns/NAMESPACE/hosts, which `ip netns exec` puts in place of
# /etc/hosts: a recipe's service names (compose.yaml, deploy/k8s/) work as written.
#
# `up` is idempotent (it removes what the prefix left before) and removes
# what it made if a step fails. Needs root and iproute2 (`ip netns`).
set -euo pipefail

prefix=${EB_HOSTS_PREFIX:-eb}
net=${EB_HOSTS_NET:-198.18.0}
hub="$prefix-hub"

die() {
    echo "hosts.sh: $*" >&2
    exit 1
}

check_privileges() {
    [ "$(id -u)" -eq 0 ] || die "needs root (network namespaces and veth pairs); run it with sudo, or as root in CI"
    command -v ip >/dev/null || die "needs iproute2's ip (apt-get install iproute2)"
    case "$net" in
    198.1[89].*.*) die "EB_HOSTS_NET is three octets, e.g. 198.18.0" ;;
    198.1[89].[0-9]*) ;;
    *) die "EB_HOSTS_NET=$net is outside the benchmarking range 198.18.0.0/15" ;;
    esac
}

# The last octet of HOST's address.
octet() {
    local host=$1 i=0
    case "$host" in
    redis) echo 2 ;;
    control) echo 3 ;;
    coord) echo 4 ;;
    valkey) echo 5 ;;
    w[0-9] | w[0-9][0-9]) echo $((10 + ${host#w})) ;;
    *)
        for h in "${hosts[@]}"; do
            i=$((i + 1))
            [ "$h" = "$host" ] && {
                echo $((100 + i))
                return
            }
        done
        die "unknown host $host"
        ;;
    esac
}

# Every namespace of this prefix (the hub and the hosts).
namespaces() {
    ip netns list | awk '{print $1}' | grep -E "^${prefix}-[A-Za-z0-9]+$" | sort || true
}

down() {
    local ns
    for ns in $(namespaces); do
        # A process left inside would keep the namespace's stack alive after its name is gone.
        local pids
        pids=$(ip netns pids "$ns" 2>/dev/null || true)
        [ -z "$pids" ] || kill -9 $pids 2>/dev/null || true
        ip netns del "$ns" 2>/dev/null || true
        rm -rf "/etc/netns/$ns"
    done
}

# /etc/netns/NS/hosts for every host: the names (and aliases) of all of them.
write_names() {
    local h table="127.0.0.1 localhost"$'\n'
    for h in "${hosts[@]}"; do
        table+="$net.$(octet "$h") $h"$'\n'
    done
    local alias
    for alias in ${EB_HOSTS_ALIASES:-}; do
        table+="$net.$(octet "${alias#*=}") ${alias%%=*}"$'\n'
    done
    for h in "${hosts[@]}"; do
        mkdir -p "/etc/netns/$prefix-$h"
        printf '%s' "$table" >"/etc/netns/$prefix-$h/hosts"
    done
}

add_host() {
    local host=$1 ns="$prefix-$1"
    [[ "$host" =~ ^[a-z][a-z0-9]{0,9}$ ]] || die "host name $host: lower-case letters and digits, at most 10"
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    ip link add eth0 netns "$ns" type veth peer name "$host" netns "$hub"
    ip -n "$ns" addr add "$net.$(octet "$host")/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$hub" link set "$host" master br0 up
}

up() {
    hosts=("$@")
    [ ${#hosts[@]} -gt 0 ] || hosts=(redis control w1 w2)
    down
    trap 'down; die "up failed; removed what it made"' ERR
    ip netns add "$hub"
    ip -n "$hub" link set lo up
    ip -n "$hub" link add br0 type bridge
    ip -n "$hub" link set br0 up
    for h in "${hosts[@]}"; do
        add_host "$h"
    done
    write_names
    trap - ERR
    # The bridge has STP off: a port forwards as soon as it is up.
    status
}

status() {
    local ns
    for ns in $(namespaces); do
        [ "$ns" = "$hub" ] && continue
        local addr state
        addr=$(ip -n "$ns" -4 -br addr show eth0 2>/dev/null | awk '{print $3}')
        state=$(ip -n "$hub" -br link show "${ns#"$prefix"-}" 2>/dev/null | awk '{print $2}')
        echo "$ns ${addr:-none} ${state:-unplugged}"
    done
}

command=${1:-}
[ $# -eq 0 ] || shift
case "$command" in
up)
    check_privileges
    up "$@"
    ;;
down)
    check_privileges
    down
    ;;
status)
    check_privileges
    status
    ;;
addr)
    hosts=("$@")
    echo "$net.$(octet "${1:?usage: hosts.sh addr HOST}")"
    ;;
link)
    check_privileges
    host=${1:?usage: hosts.sh link HOST up\|down}
    state=${2:?usage: hosts.sh link HOST up\|down}
    ip -n "$hub" link set "$host" "$state"
    ;;
*)
    die "usage: hosts.sh up [HOST...] | down | status | addr HOST | link HOST up|down"
    ;;
esac
