#!/usr/bin/env bash
# The initial load of a national registry: a generated population's registrations (one
# HouseholdRegistered event per household, no later life events) streamed into `dsr up` as
# one bulk file (`POST /v1/events:bulk`), timed until every stage is idle (`GET /v1/status`):
# acknowledged (durable in the log), processed (need scores, eligibility) and served.
#
#   load-tests/initial-load.sh                       # 9,000,000 households, 17M people
#   HOUSEHOLDS=1000000 load-tests/initial-load.sh
#   SIZES=east-africa load-tests/initial-load.sh     # the generator's default 5 people a household
#   WORK=/big/disk load-tests/initial-load.sh        # where the population and data go
#   KEEP=1 load-tests/initial-load.sh                # keep the data directory to look into
#
# Needs the release build (`cargo build --release -p dsr`), zstd and curl. Disk: the
# generated file is kept compressed (~180 MB per million households of ~5 people); `dsr up`
# needs ~4 GB per million households with ~5 people each. By default the households have
# Chile's sizes (`dsr generate --household-sizes chile`: 1.9 people a household, as the
# Registro Social de Hogares' 17.1M people in 9M households that the goal names). Reported: the times of each
# phase, resident memory of `dsr up` (sampled every 5 s), disk use at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
HOUSEHOLDS="${HOUSEHOLDS:-9000000}"
SIZES="${SIZES:-chile}"
WORK="${WORK:-/tmp/dsr-initial-load}"
PORT="${PORT:-18090}"
TARGET="${CARGO_TARGET_DIR:-target}"
DSR="${DSR_BIN:-$TARGET/release/dsr}"
[ -x "$DSR" ] || { echo "no dsr binary at $DSR: run cargo build --release -p dsr (or set DSR_BIN)" >&2; exit 2; }
command -v zstd >/dev/null || { echo "zstd is needed (apt-get install zstd)" >&2; exit 2; }

rm -rf "$WORK/data"
mkdir -p "$WORK"
POP="$WORK/population-$HOUSEHOLDS-$SIZES"
if [ ! -f "$POP/households.jsonl.zst" ]; then
    echo "generating $HOUSEHOLDS households ($SIZES sizes, seed 7, registrations only)…"
    rm -rf "$POP"
    "$DSR" generate --households "$HOUSEHOLDS" --household-sizes "$SIZES" --months 0 --seed 7 --out "$POP"
    zstd -1 -T0 -q --rm "$POP/households.jsonl" -o "$POP/households.jsonl.zst"
fi
grep -E '"(households|persons)"' "$POP/manifest.json"

"$DSR" up --data-dir "$WORK/data" --listen "127.0.0.1:$PORT" >"$WORK/up.log" 2>&1 &
UP=$!
trap 'kill $UP 2>/dev/null || true; wait $UP 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$WORK/data"' EXIT
BASE="http://127.0.0.1:$PORT"
for _ in $(seq 1 100); do curl -sf "$BASE/healthz" >/dev/null && break; sleep 0.2; done
ADMIN="$(cat "$WORK/data/security/bootstrap-admin.key")"
SOURCE="$(curl -sf -X POST "$BASE/v1/admin/clients" -H "authorization: Bearer $ADMIN" \
    -H 'content-type: application/json' \
    -d '{"id":"initial-load","role":"source_system","areas":["*"],"event_types":["*"],"source_names":["*"],"requests_per_second":1000}' \
    | sed -E 's/.*"api_key":"([^"]+)".*/\1/')"

( while kill -0 $UP 2>/dev/null; do
      echo "$(date +%s) $(awk '/VmRSS/ {print $2}' /proc/$UP/status 2>/dev/null)"
      sleep 5
  done ) >"$WORK/rss.log" &

start=$(date +%s.%N)
zstd -dc "$POP/households.jsonl.zst" \
    | curl -sS -X POST -T - "$BASE/v1/events:bulk" -H "authorization: Bearer $SOURCE" \
        -H 'content-type: application/x-ndjson' -H 'transfer-encoding: chunked' >"$WORK/bulk-answer.json"
acknowledged=$(date +%s.%N)
echo "bulk answer: $(head -c 400 "$WORK/bulk-answer.json")"
while ! curl -sf "$BASE/v1/status" -H "authorization: Bearer $ADMIN" | grep -q '"idle":true'; do sleep 1; done
served=$(date +%s.%N)

ack_s=$(echo "$acknowledged - $start" | bc)
all_s=$(echo "$served - $start" | bc)
peak_kib=$(awk '{ if ($2 > m) m = $2 } END { print m }' "$WORK/rss.log")
echo "initial load of $HOUSEHOLDS households ($SIZES sizes):"
echo "  acknowledged (durable in the log): ${ack_s} s = $(echo "$HOUSEHOLDS / $ack_s" | bc) households/s"
echo "  processed and served:              ${all_s} s = $(echo "$HOUSEHOLDS / $all_s" | bc) households/s"
echo "  resident memory of dsr up: peak $((peak_kib / 1024)) MiB, at the end $(($(awk '/VmRSS/ {print $2}' /proc/$UP/status) / 1024)) MiB"
du -sh "$WORK/data"/* | sed 's/^/  disk: /'
