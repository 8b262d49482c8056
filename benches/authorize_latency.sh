#!/usr/bin/env bash
# Latency of real-time authorization: authorize + end of a call against `tollgate serve` on a fresh
# embedded (SQLite) store or PostgreSQL schema, at steady open-loop rates (benches/authorize_load.rs).
# The account has 200 outbound trunks and unlimited credit, so calls take a trunk while one is free
# and go per-minute (priced, reserved, released) beyond that.
#
# Usage: benches/authorize_latency.sh embedded|postgres [RATE...]   (default rates: 1000 2000 5000)
# Environment: BENCH_SECONDS per rate (default 20), BENCH_PORT (default 18090), BENCH_FLOOR=1 to
#              follow each rate with the same schedule of two `GET /readyz` (the floor),
#              TOLLGATE_BIN to measure another build of tollgate (say, the last commit's),
#              PG_HOST, PG_PORT, PG_USER, PG_DB (default 127.0.0.1, 5432, postgres, test).
set -euo pipefail
mode=${1:-}
case "$mode" in
  embedded | postgres) ;;
  *) echo "usage: $0 embedded|postgres [RATE...]" >&2; exit 2 ;;
esac
shift
rates=("$@")
[[ ${#rates[@]} -gt 0 ]] || rates=(1000 2000 5000)
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
[[ -n ${TOLLGATE_BIN:-} ]] || cargo build --release --quiet
cargo bench --no-run --quiet --bench authorize_load 2>/dev/null
tollgate=${TOLLGATE_BIN:-${CARGO_TARGET_DIR:-$repo/target}/release/tollgate}
work=$(mktemp -d /tmp/authorize-bench.XXXXXX)
port=${BENCH_PORT:-18090}
store_args=(--data-dir "$work/data")
schema=""
if [[ $mode == postgres ]]; then
  schema="bench_authorize_$$"
  base="postgres://${PG_USER:-postgres}@${PG_HOST:-127.0.0.1}:${PG_PORT:-5432}/${PG_DB:-test}"
  psql "$base" -qc "CREATE SCHEMA $schema"
  store_args=(--database-url "$base?options=-c%20search_path%3D$schema")
fi
cleanup() {
  [[ -n ${daemon:-} ]] && kill "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null || true
  [[ -n $schema ]] && psql "$base" -qc "DROP SCHEMA $schema CASCADE" || true
  rm -rf "$work"
}
trap cleanup EXIT
cat > "$work/accounts.csv" <<'CSV'
account,currency,outbound_deck,inbound_deck,trunks_outbound,credit_limit
load,USD,us-npanxx,us-npanxx,200,unlimited
CSV
"$tollgate" accounts import "${store_args[@]}" "$work/accounts.csv" > /dev/null
"$tollgate" serve "${store_args[@]}" --listen "127.0.0.1:$port" --spool-dir "$work/spool" \
  --deck rate-decks/us-npanxx.csv 2> "$work/serve.log" &
daemon=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/readyz" > /dev/null && break; sleep 0.1; done
echo "tollgate authorize+end, $mode store, $(nproc) cores"
for rate in "${rates[@]}"; do
  cargo bench --quiet --bench authorize_load -- "$port" "$rate" "${BENCH_SECONDS:-20}" load 32
  if [[ -n ${BENCH_FLOOR:-} ]]; then
    echo -n "floor (GET /readyz twice): "
    cargo bench --quiet --bench authorize_load -- "$port" "$rate" "${BENCH_SECONDS:-20}" - 32
  fi
done
curl -s "http://127.0.0.1:$port/metrics" | grep -E '^tollgate_call_authorizations_total' || true
