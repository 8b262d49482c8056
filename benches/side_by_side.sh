#!/usr/bin/env bash
# Rates the same generated files with tollgate and with the DuckDB baseline, then checks that
# every cdr_id got the same billable seconds and cost. Usage:
#   benches/side_by_side.sh [N_CDRS] [N_PREFIXES] [DUCKDB_SCRIPT]
# Needs: cargo, python3 with duckdb (pip install duckdb), /usr/bin/time, hyperfine (optional).
set -euo pipefail
n_cdrs=${1:-5000000}
n_prefixes=${2:-50000}
duckdb_script=${3:-../shared/bench/duckdb_rate.py}
work=${BENCH_DIR:-$(mktemp -d)}
cargo build --release --quiet
tollgate=target/release/tollgate
"$tollgate" gen --cdrs "$n_cdrs" --prefixes "$n_prefixes" --accounts 10000 --seed 7 --out "$work/data"
echo "== tollgate"
/usr/bin/time -f "wall %e s, peak RSS %M KB, CPU %P" \
  "$tollgate" rate --quiet --output-format parquet --deck "$work/data/deck.csv" --out "$work/tollgate" "$work/data/cdrs.csv"
echo "== duckdb"
/usr/bin/time -f "wall %e s, peak RSS %M KB, CPU %P" \
  python3 "$duckdb_script" "$work/data/deck.csv" "$work/data/cdrs.csv" "$work/duckdb.parquet"
python3 benches/compare_with_duckdb.py "$work/tollgate/rated.parquet" "$work/duckdb.parquet"
if command -v hyperfine >/dev/null; then
  hyperfine --warmup 1 --runs 5 \
    -n tollgate "$tollgate rate --quiet --deck $work/data/deck.csv --out $work/tollgate $work/data/cdrs.csv" \
    -n duckdb "python3 $duckdb_script $work/data/deck.csv $work/data/cdrs.csv $work/duckdb.parquet"
fi
