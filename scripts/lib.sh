# Shared by the scripts: make sure the tools a fresh Debian machine lacks are there.

# Installs Debian's redis-server (and redis-tools: redis-cli, redis-benchmark) when missing.
ensure_redis() {
    if command -v redis-server >/dev/null && command -v redis-benchmark >/dev/null; then
        return
    fi
    echo "==> installing redis-server (Debian package)" >&2
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq redis-server redis-tools >/dev/null
    # The package starts a system-wide server; eventbench starts its own, so stop that one.
    $sudo service redis-server stop >/dev/null 2>&1 || true
    command -v redis-server >/dev/null || { echo "redis-server is still missing after apt-get install" >&2; exit 1; }
}

# cargo fmt and clippy come as rustup components.
ensure_rust_components() {
    if command -v rustup >/dev/null; then
        cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
        cargo clippy --version >/dev/null 2>&1 || rustup component add clippy
    fi
}

# The independent readers the report tests use: HdrHistogram's Python package
# (decodes latency.hlog) and Debian's headless Chromium (renders report.html).
ensure_report_tools() {
    if ! python3 -c "import hdrh.log" >/dev/null 2>&1; then
        echo "==> installing the hdrhistogram Python package" >&2
        # Debian's own python3 refuses user installs into the system (PEP 668); a pip-managed one does not.
        python3 -m pip install --quiet --root-user-action=ignore hdrhistogram \
            || python3 -m pip install --quiet --root-user-action=ignore --break-system-packages hdrhistogram
        python3 -c "import hdrh.log" || { echo "python3 cannot import hdrh after pip install hdrhistogram" >&2; exit 1; }
    fi
    if ! command -v chromium >/dev/null; then
        echo "==> installing chromium (Debian package)" >&2
        local sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
        command -v chromium >/dev/null || { echo "chromium is still missing after apt-get install" >&2; exit 1; }
    fi
}
