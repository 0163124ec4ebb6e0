#!/usr/bin/env bash
# Every check CI runs: formatting, lints, benchmarks compile, tests against a real redis-server
# (and, for the reports, HdrHistogram's Python reader and headless Chromium).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_redis
ensure_rust_components
ensure_report_tools
echo "==> cargo fmt --check"
cargo fmt --check
echo "==> cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings
echo "==> cargo bench --no-run"
cargo bench --no-run
echo "==> cargo test"
cargo test
