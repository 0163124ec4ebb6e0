#!/usr/bin/env bash
# Runs every shipped scenario (scenarios/*.toml) with the release binary against
# a private redis-server and leaves each in results/reference/<scenario>/ (CSV,
# HDR log, SVG plots, report.html), compares them all in results/reference/compare/,
# and runs disconnect-loss on Pub/Sub and on Streams into
# results/reference/pubsub-vs-streams/, then Redis against Valkey (scripts/redis-vs-valkey.sh)
# into results/reference/redis-vs-valkey/. Replaces those directories; they are committed.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_redis
cargo build --release --quiet
out=results/reference
mkdir -p "$out"
dirs=()
for scenario in scenarios/*.toml; do
    name=$(basename "$scenario" .toml)
    rm -rf "${out:?}/$name"
    echo "==> $name" >&2
    ./target/release/eventbench run "$scenario" --quiet --out "$out/$name"
    dirs+=("$out/$name")
done
rm -rf "${out:?}/compare"
./target/release/eventbench report "${dirs[@]}" --out "$out/compare"
rm -rf "${out:?}/pubsub-vs-streams"
echo "==> pubsub-vs-streams" >&2
./target/release/eventbench compare scenarios/disconnect-loss.toml --transports pubsub,streams --quiet \
    --out "$out/pubsub-vs-streams"
scripts/redis-vs-valkey.sh
du -sh "$out"
