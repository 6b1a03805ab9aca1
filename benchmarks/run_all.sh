#!/usr/bin/env bash
# Every benchmark in one run, each against a fresh pier server in its own temporary PIER_HOME
# (the scripts start it, and stop it by the pid they started), then the summary table.
#
#   benchmarks/run_all.sh            # as root, for the Slurm side (slurm-up.sh installs it)
#
# Environment: PY (python with pier installed, default /work/venv/bin/python), OUT (results
# folder, default benchmarks/results/<timestamp>), PG_ADMIN_URL (PostgreSQL server to create
# a throwaway database on; skipped when it does not answer), SKIP_SLURM=1, SKIP_RSS=1,
# PROFILE=1 (py-spy profiles of the submit and e2e runs into $OUT; costs CPU, so figures drop),
# SNAPSHOT=0 (measure the working tree's src/ instead of a frozen copy of HEAD's).
#
# By default the server under test is a copy of HEAD's src/ (git archive) put first on
# PYTHONPATH: the figures belong to one commit even while others edit the working tree.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-/work/venv/bin/python}
OUT=$(realpath -m "${OUT:-benchmarks/results/$(date +%Y%m%d-%H%M%S)}")
PG_ADMIN_URL=${PG_ADMIN_URL:-postgresql://postgres@127.0.0.1:5432/postgres}
PEERS=${PEERS:-/work/shared/peers}
mkdir -p "$OUT"

if [ "${SNAPSHOT:-1}" = 1 ]; then
    commit=$(git rev-parse --short HEAD)
    mkdir -p "$OUT/snapshot"
    git archive HEAD src | tar -x -C "$OUT/snapshot"
    export PYTHONPATH="$OUT/snapshot/src${PYTHONPATH:+:$PYTHONPATH}"
    export PIER_BENCH_COMMIT="$commit"
    echo "measuring pier at $commit (a copy of HEAD's src/ in $OUT/snapshot)"
fi

bench() {
    local name=$1
    shift
    echo "== $name: $*"
    "$PY" -m "benchmarks.$1" "${@:2}" 2>&1 | tee "$OUT/$name.log"
}

profile() { [ "${PROFILE:-0}" = 1 ] && echo "--profile $OUT/$1.pyspy.txt" || true; }

# shellcheck disable=SC2046 # profile() expands to zero or two words
bench submit_sqlite bench_submit $(profile submit_sqlite)
# the same with two API worker processes (pier server --workers 2)
bench submit_sqlite_2w bench_submit --workers 2
if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
    # shellcheck disable=SC2046
    bench submit_postgresql bench_submit --postgres "$PG_ADMIN_URL" $(profile submit_postgresql)
else
    echo "PostgreSQL not answering on 127.0.0.1:5432: skipped" | tee "$OUT/submit_postgresql.log"
fi
bench floor bench_floor
bench latency bench_latency
# shellcheck disable=SC2046
bench e2e bench_e2e $(profile e2e)
bench e2e_2w bench_e2e --workers 2
[ "${SKIP_RSS:-0}" = 1 ] || bench rss bench_rss

if [ "${SKIP_SLURM:-0}" != 1 ]; then
    started=0
    if ! sinfo -h >/dev/null 2>&1; then
        if "$PEERS/slurm-up.sh" >"$OUT/slurm-up.log" 2>&1; then
            started=1
        else
            echo "slurm-up.sh failed (exit $?); see $OUT/slurm-up.log" | tee -a "$OUT/slurm.log"
        fi
    fi
    bench slurm bench_slurm || echo "bench_slurm failed (exit $?)"
    if [ "$started" = 1 ]; then "$PEERS/slurm-down.sh"; fi
fi

grep -h '^RESULT ' "$OUT"/*.log >"$OUT/results.jsonl" || true
"$PY" -m benchmarks.summary "$OUT/results.jsonl" | tee "$OUT/summary.md"
echo "results in $OUT"
