#!/usr/bin/env bash
# Sustained throughput of `tollgate serve`: from a spool file's arrival (its rename into the spool
# folder) to its last batch committed in the ledger (the file moved to SPOOL/done/), on a fresh
# embedded (SQLite) store or a fresh PostgreSQL schema. Prints CDRs/s, elapsed seconds, the
# daemon's peak RSS, and a rough profile (sum of commit_ms from the log against the elapsed time,
# CPU seconds per thread, `top -H` snapshots during the run).
#
# Usage:
#   benches/daemon_throughput.sh embedded|postgres [TOLLGATE_BINARY]
# Without TOLLGATE_BINARY it runs `cargo build --release` (honouring CARGO_TARGET_DIR) and uses
# that binary. Environment (all optional):
#   BENCH_DATA    folder with deck.csv, accounts.csv, cdrs.csv; generated when missing with
#                 `tollgate gen --cdrs $BENCH_CDRS --prefixes 50000 --accounts 10000 --seed 7`
#                 (default /tmp/bench5m, BENCH_CDRS default 5000000)
#   BENCH_WORK    scratch folder for the store, spool and log (default /tmp/daemon-bench/run.PID);
#                 removed at the end unless BENCH_KEEP=1
#   BENCH_PORT    HTTP port of the daemon (default 18080)
#   BENCH_TIMEOUT seconds to wait for the file to be done before giving up (default 900)
#   PG_HOST, PG_PORT, PG_USER, PG_DB   PostgreSQL to use (default 127.0.0.1, 5432, postgres, test);
#                 a fresh schema bench_* is created per run and dropped afterwards
# Needs: curl, psql (postgres mode), top (procps).
set -euo pipefail

mode=${1:-}
case "$mode" in
  embedded | postgres) ;;
  *)
    echo "usage: $0 embedded|postgres [TOLLGATE_BINARY]" >&2
    exit 2
    ;;
esac

repo=$(cd "$(dirname "$0")/.." && pwd)
if [[ -n ${2:-} ]]; then
  tollgate=$(realpath "$2")
else
  (cd "$repo" && cargo build --release --quiet)
  tollgate=${CARGO_TARGET_DIR:-$repo/target}/release/tollgate
  tollgate=$(realpath "$tollgate")
fi
[[ -x $tollgate ]] || { echo "no tollgate binary at $tollgate" >&2; exit 1; }

data=${BENCH_DATA:-/tmp/bench5m}
n_gen=${BENCH_CDRS:-5000000}
port=${BENCH_PORT:-18080}
timeout_s=${BENCH_TIMEOUT:-900}
work=${BENCH_WORK:-/tmp/daemon-bench/run.$$}
pg_host=${PG_HOST:-127.0.0.1}
pg_port=${PG_PORT:-5432}
pg_user=${PG_USER:-postgres}
pg_db=${PG_DB:-test}

if [[ ! -f $data/deck.csv || ! -f $data/accounts.csv || ! -f $data/cdrs.csv ]]; then
  echo "== generating $n_gen CDRs into $data"
  mkdir -p "$data"
  "$tollgate" gen --cdrs "$n_gen" --prefixes 50000 --accounts 10000 --seed 7 --out "$data"
fi
n_cdrs=$(($(wc -l <"$data/cdrs.csv") - 1))

mkdir -p "$work"
store_dir=$work/data
spool=$work/spool
log=$work/serve.log
rm -rf "$store_dir" "$spool"
mkdir -p "$store_dir" "$spool"

daemon_pid=
sampler_pid=
schema=
psql_cmd() { psql -X -q -v ON_ERROR_STOP=1 -h "$pg_host" -p "$pg_port" -U "$pg_user" "$pg_db" "$@"; }
cleanup() {
  if [[ -n $sampler_pid ]]; then kill "$sampler_pid" 2>/dev/null || true; fi
  if [[ -n $daemon_pid ]] && kill -0 "$daemon_pid" 2>/dev/null; then
    kill -TERM "$daemon_pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$daemon_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$daemon_pid" 2>/dev/null || true
  fi
  if [[ -n $schema ]]; then
    psql_cmd -c "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null 2>&1 || true
  fi
  if [[ ${BENCH_KEEP:-0} != 1 ]]; then
    rm -rf "$work"
  fi
}
trap cleanup EXIT

store_args=(--data-dir "$store_dir")
if [[ $mode == postgres ]]; then
  schema=bench_$$_$(date +%s)
  psql_cmd -c "CREATE SCHEMA $schema"
  # tokio-postgres percent-decodes URL query values: this is options='-c search_path=SCHEMA'.
  # The application name lets the sampler below find the daemon's sessions.
  store_args+=(--database-url "postgres://$pg_user@$pg_host:$pg_port/$pg_db?options=-c%20search_path%3D$schema&application_name=$schema")
fi

echo "== $mode store, $n_cdrs CDRs from $data, binary $tollgate"
"$tollgate" accounts import "${store_args[@]}" "$data/accounts.csv"

# The file is copied beside the spool under a hidden name before the clock starts: only the
# rename is timed as the arrival.
cp "$data/cdrs.csv" "$spool/.cdrs.csv.tmp"

"$tollgate" serve "${store_args[@]}" --spool-dir "$spool" --deck "$data/deck.csv" \
  --listen "127.0.0.1:$port" 2>"$log" &
daemon_pid=$!
for _ in $(seq 600); do
  curl -sf "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
  kill -0 "$daemon_pid" 2>/dev/null || { echo "the daemon exited:" >&2; tail -20 "$log" >&2; exit 1; }
  sleep 0.1
done
curl -sf "http://127.0.0.1:$port/readyz" >/dev/null || { echo "not ready after 60 s" >&2; tail -20 "$log" >&2; exit 1; }

# Per thread, busiest first: CPU seconds (utime + stime) and, from schedstat, seconds on a CPU and
# seconds runnable but waiting for one (CPU starvation on a busy machine). The rayon workers
# inherit the name of the thread that started them (`spool`).
thread_cpu() {
  local task stat name fields f sched
  for task in /proc/"$daemon_pid"/task/*; do
    stat=$(<"$task/stat") || continue
    sched=$(<"$task/schedstat") || sched="0 0 0"
    # comm may contain spaces: take it from between the parentheses; utime and stime are the
    # 12th and 13th fields after it.
    name=${stat#*(}
    name=${name%)*}
    fields=${stat##*) }
    read -r -a f <<<"$fields"
    echo "${name// /_} ${task##*/} ${f[11]} ${f[12]} $sched"
  done | awk -v hz="$(getconf CLK_TCK)" '{printf "  %-16s tid %-7s %7.1f s CPU  (on CPU %6.1f s, waiting for a CPU %6.1f s)\n",
      $1, $2, ($3 + $4) / hz, $5 / 1e9, $6 / 1e9}' |
    sort -k4 -nr
}

# Whole-machine CPU ticks: user nice system idle iowait irq softirq steal.
machine_ticks() { awk '/^cpu / {print $2, $3, $4, $5, $6, $7, $8, $9}' /proc/stat; }

poster_tid=$(grep -lx poster /proc/"$daemon_pid"/task/*/comm | head -1 | cut -d/ -f5)
declare -A poster_states=()

# PostgreSQL: what the daemon's sessions are doing, sampled about 4 times a second (a rough
# profile of the server side of post_batch: statement and wait event, or nothing running).
if [[ $mode == postgres ]]; then
  (
    while :; do
      psql_cmd -At -c "SELECT coalesce(string_agg(coalesce(wait_event_type || ':' || wait_event, 'on CPU')
          || ' | ' || regexp_replace(left(query, 48), '\s+', ' ', 'g'), ' + '), 'no statement running')
        FROM pg_stat_activity WHERE application_name = '$schema' AND state <> 'idle'" 2>/dev/null || true
      sleep 0.25
    done
  ) >"$work/pg_activity.txt" &
  sampler_pid=$!
fi

ticks_before=$(machine_ticks)
start=$(date +%s.%N)
mv "$spool/.cdrs.csv.tmp" "$spool/cdrs.csv"
deadline=$(($(date +%s) + timeout_s))
snapshots=$work/top.txt
: >"$snapshots"
next_snapshot=$(($(date +%s) + 5))
while [[ ! -e $spool/done/cdrs.csv ]]; do
  if ! kill -0 "$daemon_pid" 2>/dev/null; then
    echo "the daemon exited during the run; log tail:" >&2
    tail -30 "$log" >&2
    exit 1
  fi
  if [[ -e $spool/failed/cdrs.csv ]]; then
    echo "the file went to failed/:" >&2
    cat "$spool"/failed/*.reason.txt >&2 || true
    exit 1
  fi
  now=$(date +%s)
  if ((now > deadline)); then
    echo "not done after $timeout_s s; log tail:" >&2
    tail -30 "$log" >&2
    exit 1
  fi
  if ((now >= next_snapshot)); then
    {
      echo "--- t+$(awk -v s="$start" -v n="$(date +%s.%N)" 'BEGIN {printf "%.0f", n - s}') s"
      top -H -b -n 1 -d 1 -p "$daemon_pid" | sed -n '7,20p'
    } >>"$snapshots" 2>&1 || true
    next_snapshot=$((now + 10))
  fi
  # The poster thread's scheduler state (R running or runnable, S sleeping, D in uninterruptible
  # I/O such as fsync), sampled every loop turn.
  if [[ -n $poster_tid ]] && read -r pstat 2>/dev/null <"/proc/$daemon_pid/task/$poster_tid/stat"; then
    pstate=${pstat##*) }
    pstate=${pstate%% *}
    poster_states[$pstate]=$((${poster_states[$pstate]:-0} + 1))
  fi
  sleep 0.05
done
end=$(date +%s.%N)
if [[ -n $sampler_pid ]]; then
  kill "$sampler_pid" 2>/dev/null || true
  wait "$sampler_pid" 2>/dev/null || true
  sampler_pid=
fi
ticks_after=$(machine_ticks)

peak_kb=$(awk '/^VmHWM/ {print $2}' /proc/"$daemon_pid"/status)
cpu_by_thread=$(thread_cpu)
kill -TERM "$daemon_pid"
status=0
wait "$daemon_pid" || status=$?
daemon_pid=

elapsed=$(awk -v s="$start" -v e="$end" 'BEGIN {printf "%.3f", e - s}')
rate=$(awk -v n="$n_cdrs" -v t="$elapsed" 'BEGIN {printf "%.0f", n / t}')
# Batch lines: rated=N ... commit_ms=M (the log has no colours: stderr is not a terminal).
read -r batches rated commit_ms < <(awk '
  /batch committed/ {
    b++
    for (i = 1; i <= NF; i++) {
      if ($i ~ /^rated=/) { split($i, kv, "="); r += kv[2] }
      if ($i ~ /^commit_ms=/) { split($i, kv, "="); c += kv[2] }
    }
  }
  END {printf "%d %d %d\n", b, r, c}' "$log") || true
done_line=$(grep 'spool file done' "$log" | tail -1 || true)
# Seconds from the rename to the first commit (digest of the whole file, first rated group).
first_commit=$(grep -m1 'batch committed' "$log" | cut -d' ' -f1 || true)
if [[ -n $first_commit ]]; then
  first_commit=$(awk -v s="$start" -v c="$(date -d "$first_commit" +%s.%N)" 'BEGIN {printf "%.2f", c - s}')
fi
machine=$(awk -v a="$ticks_before" -v b="$ticks_after" 'BEGIN {
  split(a, x); split(b, y); for (i = 1; i <= 8; i++) { d[i] = y[i] - x[i]; t += d[i] }
  printf "user %.0f%%, system %.0f%%, iowait %.0f%%, steal %.0f%%, idle %.0f%% (of all cores)",
    100 * (d[1] + d[2]) / t, 100 * (d[3] + d[6] + d[7]) / t, 100 * d[5] / t, 100 * d[8] / t, 100 * d[4] / t }')
load=$(cut -d' ' -f1-3 /proc/loadavg)

echo "== result ($mode)"
printf 'CDRs            %d\n' "$n_cdrs"
printf 'elapsed         %s s (rename -> done/)\n' "$elapsed"
printf 'throughput      %s CDRs/s\n' "$rate"
printf 'peak RSS        %d KB (%.2f GB, VmHWM)\n' "$peak_kb" "$(awk -v k="$peak_kb" 'BEGIN {print k / 1048576}')"
printf 'batches         %d, rated %d, sum commit_ms %d (%.0f%% of elapsed)\n' "$batches" "$rated" \
  "$commit_ms" "$(awk -v c="$commit_ms" -v t="$elapsed" 'BEGIN {print c / 10 / t}')"
printf 'first commit    %s s after the rename\n' "${first_commit:-?}"
printf 'daemon exit     %d after SIGTERM\n' "$status"
echo "machine         $machine during the run; load average at the end $load"
echo "done line       ${done_line#*INFO }"
samples=0
for state in "${!poster_states[@]}"; do samples=$((samples + poster_states[$state])); done
printf 'poster state    '
for state in "${!poster_states[@]}"; do
  printf '%s %.0f%%  ' "$state" "$(awk -v a="${poster_states[$state]}" -v n="$samples" 'BEGIN {print 100 * a / n}')"
done
echo "($samples samples; R running or waiting for a CPU, S sleeping, D disk wait)"
echo "CPU by thread (whole daemon life, including start-up):"
echo "$cpu_by_thread"
if [[ $mode == postgres && -s $work/pg_activity.txt ]]; then
  echo "PostgreSQL session activity ($(wc -l <"$work/pg_activity.txt") samples during the run):"
  sort "$work/pg_activity.txt" | uniq -c | sort -nr | head -15 |
    awk -v n="$(wc -l <"$work/pg_activity.txt")" '{c = $1; $1 = ""; printf "  %4.0f%% %s\n", 100 * c / n, $0}'
fi
echo "top -H snapshots (every 10 s from t+5 s; the row with the process id shows the whole process):"
cat "$snapshots"
if [[ ${BENCH_KEEP:-0} == 1 ]]; then echo "kept $work"; fi
