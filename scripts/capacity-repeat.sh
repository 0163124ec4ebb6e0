#!/usr/bin/env bash
# Is capacity's answer the same twice? Three searches on a quiet machine,
# then three with one core kept busy by another process (stress-ng --cpu 1),
# each `eventbench capacity --slo 'p99_us<2000'` (Pub/Sub 1 → 1) against a
# private redis-server with the release binary, printed with the machine's
# load. Each search's directory and each trio's repeat.csv (median, min,
# max, spread) go under results/capacity-repeat-<UTC time>/ (not committed).
#
# The bar (issue "capacity you can trust"): quiet, the three agree within
# ±15% of their median, or all three say the machine's own floor is above
# the SLO; loaded, each agrees within ±25% of the quiet median or says
# inconclusive with a range that holds it, and none is a figure off by more
# than 2×. Extra arguments go to every search (e.g. --budget 3m --step 2s).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_redis
command -v stress-ng >/dev/null || { echo "stress-ng is needed (apt-get install stress-ng)" >&2; exit 2; }
cargo build --release --quiet
bin=./target/release/eventbench
out=results/capacity-repeat-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$out"
stress=
trap '[ -n "$stress" ] && kill "$stress" 2>/dev/null; wait 2>/dev/null || true' EXIT

# One trio: three searches into $out/$1 (repeat.csv beside them); prints each headline.
trio() {
    local name=$1
    shift
    echo "== $name: $(uptime | sed 's/.*load/load/')"
    set +e
    "$bin" capacity --slo 'p99_us<2000' --repeat 3 --quiet --out "$out/$name" "$@"
    echo "   exit code $?"
    set -e
    for i in 1 2 3; do
        echo "   search $i: $(grep -o '<p><strong>[^<]*' "$out/$name/search-$i/capacity.html" | sed 's/<p><strong>//')"
    done
}

trio quiet "$@"
stress-ng --cpu 1 --quiet &
stress=$!
sleep 2
trio stress-cpu-1 "$@"
kill "$stress" 2>/dev/null || true
wait "$stress" 2>/dev/null || true
stress=
echo "== after: $(uptime | sed 's/.*load/load/')"
echo "results in $out (repeat.csv, repeat.html, search-*/capacity.html)"
