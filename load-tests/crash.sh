#!/usr/bin/env bash
# The crash harness at full size: `dsr up` as a child process, 1M life events streamed through
# the HTTP API, kill -9 at 10 random points (9 while a request is in flight, one while the
# backlog is being processed), a restart each time, then every household compared with the
# domain core applied once to the same events and every eligibility change id checked (no
# duplicates, no gaps). It is the CI test `services/dsr/tests/up_crash.rs`, sized up; a
# release build keeps the run to a few minutes.
#
#   load-tests/crash.sh                 # 1M events, 10 kills
#   EVENTS=200000 KILLS=5 load-tests/crash.sh
#   SEED=1234 load-tests/crash.sh       # repeat the kill points of an earlier run
#   KEEP=1 load-tests/crash.sh          # keep the data directory to look into
set -euo pipefail
cd "$(dirname "$0")/.."
export DSR_CRASH_EVENTS="${EVENTS:-1000000}"
export DSR_CRASH_KILLS="${KILLS:-10}"
[ -n "${SEED:-}" ] && export DSR_CRASH_SEED="$SEED"
[ -n "${KEEP:-}" ] && export DSR_CRASH_KEEP=1
exec cargo test --release --locked -p dsr --test up_crash killed -- --nocapture
