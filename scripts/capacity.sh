#!/usr/bin/env bash
# Reference capacity searches with the release binary, each against a private
# redis-server of its own, into results/reference/capacity-<name>/ (replaced):
#
#   capacity-pubsub         Pub/Sub, 1 producer → 1 consumer
#   capacity-fanout         Pub/Sub, 1 → 50 consumers (scenarios/fanout.toml)
#   capacity-streams        Streams, 1 → 1
#   capacity-streams-group  Streams, 1 → 4 consumers in one group
#
# Each SLO is a p99 bound (override with SLO_PUBSUB, SLO_FANOUT, SLO_STREAMS,
# SLO_GROUP) on top of lost==0 and sustained==1. RUNS=3 searches each three
# times (the first is kept, the others go to a scratch directory) and prints
# every maximum and how long each search took, to show how stable they are.
# ONLY=name runs one of them. Extra arguments go to every search (e.g. --budget 5m).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_redis
cargo build --release --quiet
bin=./target/release/eventbench
out=results/reference
runs=${RUNS:-1}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"

# name, then the search's flags.
searches=(
    "pubsub|--rate 10k --slo p99_us<${SLO_PUBSUB:-2000}"
    "fanout|scenarios/fanout.toml --slo p99_us<${SLO_FANOUT:-20000}"
    "streams|--transport streams --rate 5k --slo p99_us<${SLO_STREAMS:-5000}"
    "streams-group|--transport streams --consumers 4 --groups 1 --rate 5k --slo p99_us<${SLO_GROUP:-5000}"
)

summary=()
for entry in "${searches[@]}"; do
    name=${entry%%|*}
    read -r -a flags <<<"${entry#*|}"
    if [ -n "${ONLY:-}" ] && [ "$ONLY" != "$name" ]; then
        continue
    fi
    maxima=()
    for run in $(seq "$runs"); do
        dir="$out/capacity-$name"
        if [ "$run" -gt 1 ]; then
            dir="$work/capacity-$name-$run"
        else
            rm -rf "${dir:?}"
        fi
        echo "==> capacity-$name (search $run of $runs)" >&2
        start=$(date +%s)
        code=0
        "$bin" capacity "${flags[@]}" "$@" --name "capacity-$name" --format json --out "$dir" >"$work/out.json" || code=$?
        took=$(($(date +%s) - start))
        python3 - "$work/out.json" "$took" "$code" <<'EOF' >&2
import json, sys
j = json.load(open(sys.argv[1]))
print(f"    {j['headline']}  ({sys.argv[2]} s, exit {sys.argv[3]}, {len(j['steps'])} steps)")
EOF
        maxima+=("$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["max_rate"])' "$work/out.json")/${took}s")
    done
    summary+=("capacity-$name: ${maxima[*]}")
done

echo "==> maximum (msg/s) / time of each search" >&2
printf '%s\n' "${summary[@]}"
