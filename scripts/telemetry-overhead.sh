#!/usr/bin/env bash
# Does sampling the server disturb the run? The same run with
# --server-telemetry off and on, alternately (REPS times, default 3), against
# one redis-server; prints each repetition's p50 and the medians. The two
# medians should agree within the run-to-run noise the repetitions show.
# Take the figures on a quiet machine. Extra arguments go to every run
# (default workload: 1 producer → 1 channel → 4 consumers at 20,000/s for 10 s).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
perf_setup
flags=("$@")
[ ${#flags[@]} -gt 0 ] || flags=(--consumers 4 --rate 20k --duration 10s --warmup 1s)
p50() {
    run_measured "$1-$2" --server-telemetry "$1" "${flags[@]}" | json_field p50_us
}
reference() { p50 off "$1"; }
harness() { p50 on "$1"; }
compare_interleaved µs "telemetry off" "telemetry on"
echo "median p50: telemetry off $A µs, telemetry on $B µs"
