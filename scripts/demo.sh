#!/usr/bin/env bash
# The headline run on a fresh machine: installs redis-server if missing, builds
# eventbench in release mode, and runs the disconnect-loss scenario on Pub/Sub
# and on Streams against one private redis-server, side by side.
# Extra arguments go to `eventbench compare`.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_redis
cargo build --release --quiet
./target/release/eventbench compare scenarios/disconnect-loss.toml --transports pubsub,streams "$@"
