#!/usr/bin/env bash
# The headline run on a fresh machine: installs redis-server if missing, builds
# eventbench in release mode, and runs the disconnect-loss scenario against a
# private redis-server. Extra arguments go to `eventbench run`.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_redis
cargo build --release --quiet
./target/release/eventbench run scenarios/disconnect-loss.toml "$@"
