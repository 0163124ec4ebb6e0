#!/usr/bin/env bash
# Soak memory: eventbench's peak RSS over a 30-minute run against a 3-minute
# run at the same rate (1 producer, 1 consumer, 20,000 msg/s), both writing a
# checkpoint every minute as a soak does. Target: the long run's peak within
# 10% of the short one's (what grows with the seconds measured must stay small).
# Each run's summary must add up; the script says so and fails otherwise.
#   RATE (default 20000)  SHORT (default 3m)  LONG (default 30m)
#   CHECKPOINT (default 1m)  REPS (default 1)
# A quick try of the script itself: SHORT=20s LONG=60s CHECKPOINT=10s.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
REPS=${REPS:-1}
perf_setup
RATE=${RATE:-20000}
SHORT=${SHORT:-3m}
LONG=${LONG:-30m}
CHECKPOINT=${CHECKPOINT:-1m}

# One run: its peak RSS in kB (and its summary checked).
peak_rss() {
    local json
    json=$(run_measured "$1" --producers 1 --consumers 1 --rate "$RATE" --duration "$2" --checkpoint "$CHECKPOINT")
    local status expected delivered lost undelivered
    status=$(echo "$json" | sed -n 's/.*"status":"\([a-z]*\)".*/\1/p')
    expected=$(json_field expected <<<"$json")
    delivered=$(json_field delivered <<<"$json")
    lost=$(json_field lost <<<"$json")
    undelivered=$(json_field undelivered <<<"$json")
    if [ "$status" != ok ] || [ $((delivered + lost + undelivered)) -ne "$expected" ]; then
        echo "$1: status $status, delivered $delivered + lost $lost + undelivered $undelivered vs expected $expected" >&2
        exit 1
    fi
    echo "  $1: $2 at $RATE msg/s, status $status, delivered $delivered of $expected, lost $lost" >&2
    json_field peak_rss_kb <<<"$json"
}
reference() { peak_rss "short-$1" "$SHORT"; }
harness() { peak_rss "long-$1" "$LONG"; }

compare_interleaved kB "$SHORT run" "$LONG run"
echo "soak at $RATE msg/s, a checkpoint every $CHECKPOINT: peak RSS $A kB over $SHORT, $B kB over $LONG (medians of $REPS)"
awk -v a="$A" -v b="$B" 'BEGIN { printf "ratio %s/%s = %.3f (target <= 1.10)\n", "'"$LONG"'", "'"$SHORT"'", b / a }'
