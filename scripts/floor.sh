#!/usr/bin/env bash
# Latency floor: eventbench's p50 end-to-end latency at 1,000 messages per
# second (1 producer, 1 consumer) against the round trip of redis-benchmark's
# PING (one client, no pipelining) on the same redis-server, in the same run.
# Repetitions alternate between the two; medians are printed. Target ratio <= 1.25.
# For context (when a C compiler is there) it also times scripts/paced_pubsub.c,
# a minimal C client that publishes at the same pace and measures the same way
# (the floor of any paced Pub/Sub client on this machine, which a hot PING loop
# is not), and the same client sending PING at that pace (one hop, like
# redis-benchmark's, but with a paced client's idle gaps).
#   REPS (default 3)  DURATION (eventbench, default 10s)  PINGS (default 20000)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
perf_setup
DURATION=${DURATION:-10s}
PINGS=${PINGS:-20000}

PACED=""
if command -v cc >/dev/null && cc -O2 -pthread -o "$WORK/paced_pubsub" scripts/paced_pubsub.c; then
    PACED="$WORK/paced_pubsub"
fi

# redis-benchmark's p50 for PING (the RESP form, like eventbench's commands), in µs.
# The paced C client's p50 goes to stderr and to $WORK/paced.
reference() {
    if [ -n "$PACED" ]; then
        local c
        c=$("$PACED" "$REDIS_PORT" 1000 "$(($(duration_s) * 1000))" 64)
        echo "$c" >>"$WORK/paced"
        p=$("$PACED" "$REDIS_PORT" 1000 "$(($(duration_s) * 1000))" 64 ping)
        echo "$p" >>"$WORK/paced-ping"
        echo "  paced C client p50 $c µs, paced PING p50 $p µs" >&2
    fi
    redis-benchmark -p "$REDIS_PORT" -c 1 -n "$PINGS" -t ping --csv --precision 3 |
        awk -F'"' '$2 == "PING_MBULK" { printf "%.1f\n", $10 * 1000 }'
}

# DURATION in whole seconds (10s, 1m).
duration_s() {
    case $DURATION in
        *m) echo $((${DURATION%m} * 60)) ;;
        *s) echo "${DURATION%s}" ;;
        *) echo "$DURATION" ;;
    esac
}

# eventbench's p50 from the intended send time, in µs; the rest of its summary on stderr.
harness() {
    local json
    json=$("$EVENTBENCH" run --url "redis://127.0.0.1:$REDIS_PORT" --rate 1000 --producers 1 --consumers 1 \
        --duration "$DURATION" --quiet --format json --out "$WORK/run-$1" 2>/dev/null)
    echo "  eventbench: raw_p50_us $(echo "$json" | json_field raw_p50_us)," \
        "send_lag_p99_us $(echo "$json" | json_field send_lag_p99_us)," \
        "harness_cpu_pct $(echo "$json" | json_field harness_cpu_pct)" >&2
    echo "$json" | json_field p50_us
}

compare_interleaved µs
echo "floor: redis-benchmark PING p50 ${A} µs, eventbench p50 ${B} µs at 1000 msg/s (medians of $REPS)"
awk -v a="$A" -v b="$B" 'BEGIN { printf "ratio eventbench/redis-benchmark = %.2f (target <= 1.25)\n", b / a }'
if [ -s "$WORK/paced" ]; then
    c=$(median $(cat "$WORK/paced"))
    echo "context: paced C client p50 ${c} µs; eventbench/paced C client = $(awk -v c="$c" -v b="$B" 'BEGIN { printf "%.2f", b / c }')"
    p=$(median $(cat "$WORK/paced-ping"))
    echo "context: PING paced at 1000/s p50 ${p} µs (redis-benchmark's back-to-back PING ${A} µs); eventbench/paced PING = $(awk -v p="$p" -v b="$B" 'BEGIN { printf "%.2f", b / p }')"
fi
