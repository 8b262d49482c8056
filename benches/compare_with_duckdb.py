#!/usr/bin/env python3
"""Side-by-side check: every cdr_id must have the same billable seconds and cost in tollgate's
rated Parquet and in the DuckDB baseline's. Usage: compare_with_duckdb.py TOLLGATE.parquet DUCKDB.parquet
Exits non-zero, printing a few examples, when any row differs."""
import sys
import duckdb

ours, theirs = sys.argv[1:3]
con = duckdb.connect()
query = f"""
WITH a AS (SELECT cdr_id, billable_seconds::BIGINT b, cost::DECIMAL(18,4) c FROM read_parquet('{ours}')),
     d AS (SELECT cdr_id, billable_seconds::BIGINT b, cost::DECIMAL(18,4) c FROM read_parquet('{theirs}'))
SELECT count(*) FILTER (WHERE a.cdr_id IS NULL OR d.cdr_id IS NULL) AS missing,
       count(*) FILTER (WHERE a.b IS DISTINCT FROM d.b OR a.c IS DISTINCT FROM d.c) AS different,
       count(*) AS compared,
       sum(a.c) AS ours_total, sum(d.c) AS duckdb_total
FROM a FULL OUTER JOIN d USING (cdr_id)
"""
missing, different, compared, ours_total, duckdb_total = con.execute(query).fetchone()
print(f"compared {compared} cdr_ids: {missing} missing on one side, {different} with different "
      f"billable seconds or cost; totals {ours_total} (tollgate) vs {duckdb_total} (duckdb)")
if missing or different:
    examples = con.execute(query.replace("SELECT count(*) FILTER", "SELECT * FROM (SELECT a.cdr_id, a.b, a.c, d.b, d.c FROM a FULL OUTER JOIN d USING (cdr_id) WHERE a.b IS DISTINCT FROM d.b OR a.c IS DISTINCT FROM d.c) LIMIT 5 --").split("--")[0]).fetchall()
    print(examples)
    sys.exit(1)
