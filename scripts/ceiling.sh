#!/usr/bin/env bash
# Throughput ceiling: how many deliveries per second eventbench gets through
# Redis Pub/Sub (1 producer, 1 consumer, 64-byte messages, as fast as possible),
# against a C reference measured in the same run on the same server:
# redis-benchmark pipelining PUBLISH (-P 64) into one redis-cli SUBSCRIBE,
# timed until the subscriber has read every message.
# Repetitions alternate between the two; medians are printed. Target ratio >= 0.8.
#   REPS (default 3)  MESSAGES (reference messages, default 2000000)  DURATION (eventbench, default 5s)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
perf_setup
MESSAGES=${MESSAGES:-2000000}
DURATION=${DURATION:-5s}
PAYLOAD=$(printf 'x%.0s' $(seq 64))

# A subscriber that falls behind keeps its backlog instead of being cut off.
redis-cli -p "$REDIS_PORT" config set client-output-buffer-limit "pubsub 0 0 0" >/dev/null

# (a) redis-benchmark -> redis-cli SUBSCRIBE; prints deliveries per second.
# redis-cli writes each message to /dev/null (to a pipe it would be its own
# bottleneck); the clock stops when Redis holds nothing more for it (omem=0)
# and no byte is left in either socket buffer of its connection: everything
# has been read by the subscriber.
reference() {
    local ch="ceiling:$1" t0 t1 sub
    redis-cli -p "$REDIS_PORT" subscribe "$ch" >/dev/null 2>&1 &
    sub=$!
    until [ "$(redis-cli -p "$REDIS_PORT" pubsub numsub "$ch" | tail -1)" = 1 ]; do sleep 0.01; done
    t0=$(now_s)
    redis-benchmark -p "$REDIS_PORT" -c 1 -P 64 -n "$MESSAGES" -q PUBLISH "$ch" "$PAYLOAD" >/dev/null
    until [ "$(subscriber_backlog)" = 0 ]; do sleep 0.005; done
    t1=$(now_s)
    kill "$sub"
    wait "$sub" 2>/dev/null || true
    awk -v n="$MESSAGES" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f\n", n / (b - a) }'
}

# Bytes not yet read by the subscriber: its output buffer in Redis plus what
# sits in the socket buffers of every connection to the server (only the
# subscriber's carry data at that point).
subscriber_backlog() {
    local omem queued
    omem=$(redis-cli -p "$REDIS_PORT" client list type pubsub | sed -n 's/.* omem=\([0-9]*\).*/\1/p')
    queued=$(ss -Htn state established "( sport = :$REDIS_PORT or dport = :$REDIS_PORT )" |
        awk '{ q += $1 + $2 } END { print q + 0 }')
    echo $((${omem:-0} + queued))
}

# (b) eventbench, same server, same limits; prints deliveries per second. No
# drain: what is still in flight when the measured phase ends counts as lost,
# not delivered, so the rate is what the consumer took in during the phase.
harness() {
    local json
    json=$("$EVENTBENCH" run --url "redis://127.0.0.1:$REDIS_PORT" --rate 0 --producers 1 --consumers 1 \
        --payload 64 --duration "$DURATION" --drain 0s --quiet --format json --out "$WORK/run-$1")
    echo "$json" | json_field delivery_rate | awk '{ printf "%.0f\n", $1 }'
}

compare_interleaved deliveries/s
echo "ceiling: reference (a) ${A} deliveries/s, eventbench (b) ${B} deliveries/s (medians of $REPS)"
awk -v a="$A" -v b="$B" 'BEGIN { printf "ratio (b)/(a) = %.2f (target >= 0.8)\n", b / a }'
