#!/usr/bin/env bash
# Paced efficiency: what eventbench's own CPU costs per message at a paced
# rate, 1 producer → 1 consumer, 64 B, for Pub/Sub and Streams, against the
# minimal C client (scripts/paced_pubsub.c) where one applies (Pub/Sub). For
# each transport and rate, REPS repetitions alternate eventbench and the C
# client on the same redis-server, so the machine's other load falls on both
# alike; medians are printed, one line per (transport, rate, client):
#
#   cpu        user+sys over the process's wall time (cores)
#   user sys   the same split
#   ns/msg     user+sys per delivered message
#   sc/msg     system calls per delivered message, and
#   cs/msg     context switches per delivered message (perf stat software
#              counters: these two hardly depend on the machine's load;
#              "-" where perf is not there)
#   p50 p99    end-to-end latency from the intended send time, µs
#   redis      redis-server's CPU over the same wall time (cores)
#   limited    eventbench's harness_limited
#
#   REPS (default 3)  DURATION (default 10s, eventbench's measured phase; the
#   C client sends the same number of messages)  RATES (default
#   "10000 50000 100000 800000")  TRANSPORTS (default "pubsub streams")  C_RATES
#   (the rates the C client runs at, default "10000 100000")  INSTRUCTIONS=1
#   (instead: instructions per message under callgrind, see below)
#   EVENTBENCH (a binary to measure instead of building this tree's release
#   build: e.g. a build of an earlier commit, for a before/after table)
#
# Then the capacity rows (#26), against `--rate 0`: for Pub/Sub 1 → 1,
# Streams 1 → 1 and fan-out 1 → 50 (Pub/Sub), each repetition runs `--rate 0`
# first, then paced at 50% and 80% of the deliveries a second the first
# repetition's `--rate 0` run made, and prints one line per (shape, rate):
#
#   dlv/s      deliveries a second in the measured phase
#   ns/dlv     eventbench's user+sys per delivered message
#   x_rate0    ns/dlv over the same shape's `--rate 0` ns/dlv (the issue's
#              target: at most 2 at 50%)
#   wake_p99   the machine's wake-up floor during that run (the probe's
#              machine_wakeup_p99_us, µs): read every row against it
#
#   SHAPES (default "pubsub streams fanout")  FRACTIONS (default "0.5 0.8")
#   CAPACITY=1 also runs `eventbench capacity` per shape (SLOs as the issue's:
#   p99 < 2 ms, 5 ms, 20 ms; CAPACITY_BUDGET, default 3m) and prints its
#   maximum against the `--rate 0` rate.
#
# --quick: a smoke run to show the script works (1 s runs, REPS=1, only
# Pub/Sub at 100,000/s in the first table; CAPACITY=1 searches with a 30 s
# budget); its figures mean nothing.
#
# First, the machine's own floor (scripts/wakeup.c): the CPU a thread takes
# to do nothing but wake up on a timer every 10, 20, 50 and 100 µs. No paced
# client here can take less per wake-up, so it says how many wake-ups a
# second a CPU budget affords, and so how many messages each must carry.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
for arg in "$@"; do
    case $arg in
        --quick)
            DURATION=${DURATION:-1s} REPS=${REPS:-1} RATES=${RATES:-100000} TRANSPORTS=${TRANSPORTS:-pubsub}
            C_RATES=${C_RATES:-} CAPACITY_BUDGET=${CAPACITY_BUDGET:-30s}
            ;;
        *) echo "usage: $0 [--quick]   (settings are environment variables, see the top of this script)" >&2; exit 2 ;;
    esac
done
perf_setup
DURATION=${DURATION:-10s}
RATES=${RATES-10000 50000 100000 800000}
TRANSPORTS=${TRANSPORTS:-pubsub streams}
SHAPES=${SHAPES-pubsub streams fanout}
FRACTIONS=${FRACTIONS:-0.5 0.8}
# The C client sleeps and writes once per message: past 100,000/s it falls
# behind its schedule on a 2-CPU VM and is no reference (nor done in time).
C_RATES=${C_RATES-10000 100000}

secs() {
    case $1 in
        *ms) awk -v v="${1%ms}" 'BEGIN { print v / 1000 }' ;;
        *m) echo $((${1%m} * 60)) ;;
        *s) echo "${1%s}" ;;
        *) echo "$1" ;;
    esac
}

PACED=""
if command -v cc >/dev/null && cc -O2 -pthread -o "$WORK/paced_pubsub" scripts/paced_pubsub.c; then
    PACED="$WORK/paced_pubsub"
fi
PERF=""
if command -v perf >/dev/null && perf stat -e raw_syscalls:sys_enter,context-switches true >/dev/null 2>&1; then
    PERF=1
fi

# Runs "$@" measured: prints "user sys wall syscalls switches redis_cpu_s" on
# fd 3 (the command's stdout goes to $WORK/out). $1 names the run.
measured() {
    local name=$1 r0 r1 t0 t1
    shift
    r0=$(redis_cpu_s)
    t0=$(now_s)
    if [ -n "$PERF" ]; then
        perf stat -x, -e raw_syscalls:sys_enter,context-switches -o "$WORK/$name.perf" \
            /usr/bin/time -f "%U %S" -o "$WORK/$name.time" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" || true
    else
        /usr/bin/time -f "%U %S" -o "$WORK/$name.time" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" || true
    fi
    t1=$(now_s)
    r1=$(redis_cpu_s)
    local sc="-" cs="-"
    if [ -n "$PERF" ]; then
        sc=$(awk -F, '$3 == "raw_syscalls:sys_enter" { print $1 }' "$WORK/$name.perf")
        cs=$(awk -F, '$3 == "context-switches" { print $1 }' "$WORK/$name.perf")
    fi
    echo "$(tail -1 "$WORK/$name.time") $(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }') $sc $cs" \
        "$(awk -v a="$r0" -v b="$r1" 'BEGIN { print b - a }')"
}

# One line of figures for a run: cpu user sys ns/msg sc/msg cs/msg p50 p99 redis limited.
# $1 the measured() line, $2 delivered, $3 p50, $4 p99, $5 limited, $6 the
# process's busy wall time (s, what its CPU is divided by).
figures() {
    echo "$1" | awk -v n="$2" -v p50="$3" -v p99="$4" -v lim="$5" -v busy="$6" '{
        user = $1; sys = $2; wall = $3; sc = $4; cs = $5; redis = $6
        if (busy <= 0) busy = wall
        per = (n > 0) ? (user + sys) * 1e9 / n : 0
        scm = (sc == "-" || n == 0) ? "-" : sprintf("%.2f", sc / n)
        csm = (cs == "-" || n == 0) ? "-" : sprintf("%.2f", cs / n)
        printf("%.3f %.3f %.3f %.0f %s %s %s %s %.3f %s\n", (user + sys) / busy, user / busy, sys / busy,
            per, scm, csm, p50, p99, redis / wall, lim)
    }'
}

eventbench() {
    local transport=$1 rate=$2 name=$3 m json
    m=$(measured "$name" "$EVENTBENCH" run --url "redis://127.0.0.1:$REDIS_PORT" --transport "$transport" \
        --rate "$rate" --producers 1 --consumers 1 --payload 64 --duration "$DURATION" --warmup 1s \
        --quiet --format json --out "$WORK/$name.dir")
    json=$(cat "$WORK/$name.out")
    [ -n "$json" ] || { cat "$WORK/$name.err" >&2; exit 1; }
    # Its wall time includes connecting, the warmup and the drain: CPU is over all of it.
    # Its CPU covers the warmup's messages too, which `delivered` leaves out.
    figures "$m" "$(echo "$json" | json_field delivered | awk -v d="$(secs "$DURATION")" '{ printf "%d", $1 * (d + 1) / d }')" \
        "$(echo "$json" | json_field p50_us)" \
        "$(echo "$json" | json_field p99_us)" "$(echo "$json" | sed -n 's/.*"harness_limited":\([a-z]*\).*/\1/p')" 0
}

c_client() {
    local rate=$1 name=$2 count m
    count=$(awk -v r="$rate" -v d="$(secs "$DURATION")" 'BEGIN { printf "%d", r * d }')
    # Cut off if it falls far behind (then its latencies say only that).
    m=$(PACED_P99=1 measured "$name" timeout "$(awk -v d="$(secs "$DURATION")" 'BEGIN { print 3 * d + 5 }')" \
        "$PACED" "$REDIS_PORT" "$rate" "$count" 64)
    local p50=- p99=-
    [ -s "$WORK/$name.out" ] && read -r p50 p99 <"$WORK/$name.out"
    figures "$m" "$count" "$p50" "$p99" - 0
}

# Medians, column by column, of the lines in file $1.
medians() {
    local cols i out=""
    cols=$(head -1 "$1" | wc -w)
    for i in $(seq "$cols"); do
        local vals
        vals=$(awk -v i="$i" '{ print $i }' "$1")
        case $vals in
            *[a-z-]*) out="$out $(echo "$vals" | sort | uniq -c | sort -rn | awk 'NR == 1 { print $2 }')" ;;
            *) out="$out $(median $vals)" ;;
        esac
    done
    echo "${out# }"
}

# INSTRUCTIONS=1: instructions eventbench executes per delivered message
# (valgrind's callgrind; user space only, and independent of the machine's
# load), at 10,000 msg/s: the difference between a 1 s and a 3 s run over the
# difference in deliveries, so that start-up and the end of a run cancel out.
# Valgrind runs the threads one at a time, far slower: a paced run there
# batches more than it would natively, so compare builds with each other only.
if [ "${INSTRUCTIONS:-0}" = 1 ]; then
    IR_RATE=${IR_RATE:-10000}
    command -v valgrind >/dev/null || { echo "INSTRUCTIONS=1 needs valgrind (apt-get install valgrind)" >&2; exit 1; }
    irs() {
        local name=$1 transport=$2 d=$3 json
        json=$(valgrind --tool=callgrind --callgrind-out-file="$WORK/$name.cg" "$EVENTBENCH" run \
            --url "redis://127.0.0.1:$REDIS_PORT" --transport "$transport" --rate "$IR_RATE" --producers 1 --consumers 1 \
            --payload 64 --duration "$d" --warmup 0s --quiet --format json --out "$WORK/$name.dir" 2>"$WORK/$name.err")
        echo "$(sed -n 's/^summary: //p' "$WORK/$name.cg" | awk '{ print $1 }') $(echo "$json" | json_field delivered)"
    }
    for transport in $TRANSPORTS; do
        read -r i1 n1 < <(irs "ir-$transport-1" "$transport" 1s)
        read -r i3 n3 < <(irs "ir-$transport-3" "$transport" 3s)
        awk -v t="$transport" -v r="$IR_RATE" -v i1="$i1" -v n1="$n1" -v i3="$i3" -v n3="$n3" 'BEGIN {
            printf "%s at %s msg/s: %.0f instructions per delivered message (%d over %d messages)\n",
                t, r, (i3 - i1) / (n3 - n1), i3 - i1, n3 - n1 }'
    done
    exit 0
fi

# The flags of a capacity row's shape.
shape_flags() {
    case $1 in
        pubsub) echo "--transport pubsub --consumers 1" ;;
        streams) echo "--transport streams --consumers 1" ;;
        fanout) echo "--transport pubsub --consumers 50" ;;
        *) echo "unknown shape $1 (pubsub, streams, fanout)" >&2; exit 2 ;;
    esac
}

# One capacity row's run: prints the figures line, then dlv/s and wake_p99.
# $1 shape, $2 the publish rate (0: as fast as possible), $3 the run's name.
shape_run() {
    local m json
    # shellcheck disable=SC2046
    m=$(measured "$3" "$EVENTBENCH" run --url "redis://127.0.0.1:$REDIS_PORT" $(shape_flags "$1") \
        --rate "$2" --producers 1 --payload 64 --duration "$DURATION" --warmup 1s --quiet --format json --out "$WORK/$3.dir")
    json=$(cat "$WORK/$3.out")
    [ -n "$json" ] || { cat "$WORK/$3.err" >&2; exit 1; }
    local delivered p50 p99 limited rate wake expected sent
    delivered=$(echo "$json" | json_field delivered | awk -v d="$(secs "$DURATION")" '{ printf "%d", $1 * (d + 1) / d }')
    p50=$(echo "$json" | json_field p50_us)
    p99=$(echo "$json" | json_field p99_us)
    limited=$(echo "$json" | sed -n 's/.*"harness_limited":\([a-z]*\).*/\1/p')
    rate=$(echo "$json" | json_field delivery_rate | awk '{ printf "%.0f", $1 }')
    wake=$(echo "$json" | json_field machine_wakeup_p99_us)
    expected=$(echo "$json" | json_field expected)
    sent=$(echo "$json" | json_field sent)
    echo "$(figures "$m" "$delivered" "$p50" "$p99" "$limited" 0) $rate ${wake:--}" \
        "$(awk -v e="$expected" -v s="$sent" 'BEGIN { printf "%.3f", (s > 0) ? e / s : 1 }')"
}

# The capacity rows: `--rate 0`, then paced at FRACTIONS of its delivery
# rate, alternating within each repetition; medians per row.
capacity_rows() {
    echo "capacity rows: CPU per delivered message paced against --rate 0 ($DURATION per run, REPS=$REPS)"
    printf '%-8s %-6s %9s %10s %6s %7s %7s %8s %8s %6s %7s %s\n' \
        shape run rate dlv/s cpu ns/dlv x_rate0 p50_us p99_us redis limited wake_p99
    local shape i f r0 fan rate
    for shape in $SHAPES; do
        : >"$WORK/row-0"
        for f in $FRACTIONS; do : >"$WORK/row-$f"; done
        r0=""
        for i in $(seq "$REPS"); do
            shape_run "$shape" 0 "cap-$shape-0-$i" >>"$WORK/row-0"
            if [ -z "$r0" ]; then
                # The publish rate that made those deliveries: deliveries over the fan-out.
                read -r r0 fan < <(tail -1 "$WORK/row-0" | awk '{ print $11, $13 }')
            fi
            for f in $FRACTIONS; do
                rate=$(awk -v r="$r0" -v fan="$fan" -v f="$f" 'BEGIN { printf "%.0f", f * r / fan }')
                shape_run "$shape" "$rate" "cap-$shape-$f-$i" >>"$WORK/row-$f"
            done
        done
        local base
        base=$(medians "$WORK/row-0" | awk '{ print $4 }')
        for f in 0 $FRACTIONS; do
            # shellcheck disable=SC2046
            set -- $(medians "$WORK/row-$f")
            rate=0
            [ "$f" = 0 ] || rate=$(awk -v r="$r0" -v fan="$fan" -v f="$f" 'BEGIN { printf "%.0f", f * r / fan }')
            printf '%-8s %-6s %9s %10s %6s %7s %7s %8s %8s %6s %7s %s\n' "$shape" \
                "$([ "$f" = 0 ] && echo rate0 || awk -v f="$f" 'BEGIN { printf "%d%%", f * 100 }')" "$rate" "${11}" "$1" "$4" \
                "$(awk -v a="$4" -v b="$base" 'BEGIN { printf "%.2f", (b > 0) ? a / b : 0 }')" "$7" "$8" "$9" "${10}" "${12}"
        done
        if [ "${CAPACITY:-0}" = 1 ]; then
            capacity_search "$shape" "$r0" "$fan"
        fi
    done
}

# `eventbench capacity` for a shape, its maximum against the `--rate 0` delivery rate $2 (fan-out $3).
capacity_search() {
    local slo=2000 out="$WORK/capacity-$1.json"
    case $1 in streams) slo=5000 ;; fanout) slo=20000 ;; esac
    # shellcheck disable=SC2046
    "$EVENTBENCH" capacity --url "redis://127.0.0.1:$REDIS_PORT" $(shape_flags "$1") --producers 1 --payload 64 \
        --slo "p99_us<$slo" --budget "${CAPACITY_BUDGET:-3m}" --format json --out "$WORK/capacity-$1" \
        >"$out" 2>"$WORK/capacity-$1.err" || true
    [ -s "$out" ] || { echo "  capacity $1: no result"; sed 's/^/    /' "$WORK/capacity-$1.err" >&2; return; }
    python3 - "$out" "$2" "$3" "$1" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
rate0, fan, shape = float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
m = j.get("max_rate")
ratio = f"{m * fan / rate0:.2f}x the --rate 0 rate" if m and rate0 > 0 else "no maximum"
print(f"  capacity {shape}: max {m} msg/s, {ratio}: {j['headline']}")
PY
}

machine_load
if command -v cc >/dev/null && cc -O2 -o "$WORK/wakeup" scripts/wakeup.c; then
    "$WORK/wakeup" 10000 20000 50000 100000 | awk '
        $1 == "syscall_ns" { printf "machine floor: a system call %d ns; a bare timer wake-up (scripts/wakeup.c):\n", $2; next }
        { printf "  every %3d us: %6.0f wake-ups/s, %.3f cores, %.1f us of CPU each; 0.3 core affords %.0f such wake-ups/s\n",
            $1 / 1000, $2, $3, $4, 0.3e6 / $4 }'
fi
echo "eventbench: $EVENTBENCH; $DURATION per run, REPS=$REPS"
printf '%-8s %8s %-10s %6s %6s %6s %7s %6s %6s %8s %8s %6s %s\n' \
    transport rate client cpu user sys ns/msg sc/msg cs/msg p50_us p99_us redis limited
[ -z "$RATES" ] || for transport in $TRANSPORTS; do
    for rate in $RATES; do
        : >"$WORK/eb" && : >"$WORK/c"
        for i in $(seq "$REPS"); do
            eventbench "$transport" "$rate" "eb-$transport-$rate-$i" >>"$WORK/eb"
            if [ "$transport" = pubsub ] && [ -n "$PACED" ] && [[ " $C_RATES " == *" $rate "* ]]; then
                c_client "$rate" "c-$rate-$i" >>"$WORK/c"
            fi
        done
        for client in eb c; do
            [ -s "$WORK/$client" ] || continue
            name=eventbench
            [ "$client" = c ] && name=C-client
            # shellcheck disable=SC2046
            printf '%-8s %8s %-10s %6s %6s %6s %7s %6s %6s %8s %8s %6s %s\n' \
                "$transport" "$rate" "$name" $(medians "$WORK/$client")
        done
    done
done
[ -z "$SHAPES" ] || capacity_rows
machine_load
