#!/usr/bin/env bash
# Flat memory: eventbench's peak RSS over a 60 s run at 50,000 msg/s against a
# 10 s run's (1 producer, 1 consumer), alternating, medians of REPS.
# Target: the long run within 10% of the short one.
#   REPS (default 3)  RATE (default 50000)  SHORT (default 10s)  LONG (default 60s)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
perf_setup
RATE=${RATE:-50000}
SHORT=${SHORT:-10s}
LONG=${LONG:-60s}

peak_rss() {
    run_measured "$1" --producers 1 --consumers 1 --rate "$RATE" --duration "$2" | json_field peak_rss_kb
}
reference() { peak_rss "short-$1" "$SHORT"; }
harness() { peak_rss "long-$1" "$LONG"; }

compare_interleaved kB "$SHORT run" "$LONG run"
echo "memory at $RATE msg/s: peak RSS $A kB over $SHORT, $B kB over $LONG (medians of $REPS)"
awk -v a="$A" -v b="$B" 'BEGIN { printf "ratio %s/%s = %.3f (target <= 1.10)\n", "'"$LONG"'", "'"$SHORT"'", b / a }'
