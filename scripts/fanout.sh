#!/usr/bin/env bash
# Fan-out at scale: 1 producer at 20 msg/s to 5,000 consumers on one channel
# (100,000 deliveries per second) for 30 s. Checks lost = 0, p99 below 50 ms
# and eventbench's peak RSS below 300 MB; prints the medians of REPS runs.
# When a C compiler is there, each repetition also runs scripts/fanout_c.c, a
# minimal C client doing the same (N subscriber connections read by one epoll
# thread, a paced publisher, latency from the intended send time), so that the
# p99 can be read against what any client gets from this Redis on this machine.
#   REPS (default 3)  CONSUMERS (default 5000)  RATE (default 20)  DURATION (default 30s)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
perf_setup
CONSUMERS=${CONSUMERS:-5000}
RATE=${RATE:-20}
DURATION=${DURATION:-30s}

CREF=""
if command -v cc >/dev/null && cc -O2 -pthread -o "$WORK/fanout_c" scripts/fanout_c.c; then
    CREF="$WORK/fanout_c"
fi
case $DURATION in *m) seconds=$((${DURATION%m} * 60)) ;; *) seconds=${DURATION%s} ;; esac

machine_load
lost=() p99=() rss=() lag=() cpu=() c_p99=()
for i in $(seq "$REPS"); do
    if [ -n "$CREF" ]; then
        c=$("$CREF" "$REDIS_PORT" "$RATE" "$(awk -v r="$RATE" -v s="$seconds" 'BEGIN { printf "%d", r * s }')" 64 "$CONSUMERS")
        c_p99+=("${c#* }")
        echo "rep $i: C reference p50 ${c% *} µs, p99 ${c#* } µs"
    fi
    cpu0=$(redis_cpu_s)
    t0=$(now_s)
    json=$(run_measured "fanout-$i" --producers 1 --consumers "$CONSUMERS" --channels 1 --rate "$RATE" \
        --duration "$DURATION")
    redis_cpus=$(awk -v c0="$cpu0" -v c1="$(redis_cpu_s)" -v t0="$t0" -v t1="$(now_s)" 'BEGIN { printf "%.2f", (c1 - c0) / (t1 - t0) }')
    lost+=("$(echo "$json" | json_field lost)")
    p99+=("$(echo "$json" | json_field p99_us)")
    rss+=("$(echo "$json" | json_field peak_rss_kb)")
    lag+=("$(echo "$json" | json_field send_lag_p99_us)")
    cpu+=("$(echo "$json" | json_field harness_cpu_pct)")
    echo "rep $i: delivered $(echo "$json" | json_field delivered), lost ${lost[-1]}," \
        "p50 $(echo "$json" | json_field p50_us) µs, p99 ${p99[-1]} µs, peak RSS ${rss[-1]} kB," \
        "send lag p99 ${lag[-1]} µs, harness CPU ${cpu[-1]}%, Redis ${redis_cpus} CPUs over the whole run"
done
machine_load
m_lost=$(median "${lost[@]}")
m_p99=$(median "${p99[@]}")
m_rss=$(median "${rss[@]}")
echo "fan-out 1 -> $CONSUMERS at $RATE msg/s for $DURATION (medians of $REPS): lost $m_lost, p99 $m_p99 µs," \
    "peak RSS $((m_rss / 1024)) MB, send lag p99 $(median "${lag[@]}") µs, harness CPU $(median "${cpu[@]}")%"
if [ -n "$CREF" ]; then
    c=$(median "${c_p99[@]}")
    echo "reference: minimal C client p99 $c µs; eventbench/C = $(awk -v c="$c" -v b="$m_p99" 'BEGIN { printf "%.2f", b / c }')"
fi
verdict() { if [ "$2" = 1 ]; then echo "  $1: met"; else echo "  $1: NOT met"; fi; }
verdict "lost = 0 (every run)" "$(printf '%s\n' "${lost[@]}" | awk '$1 != 0 { bad = 1 } END { print !bad }')"
verdict "p99 < 50 ms" "$(awk -v v="$m_p99" 'BEGIN { print v < 50000 }')"
verdict "peak RSS < 300 MB" "$(awk -v v="$m_rss" 'BEGIN { print v < 300 * 1024 }')"
