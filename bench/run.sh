#!/usr/bin/env bash
# One-command benchmark of backfill_codex_usage_cache --execute (see bench/bench.java).
#
#   bench/run.sh                      250k, 1M and 4M usage rows (long: about an hour on 2 cores)
#   bench/run.sh 250000 1000000       chosen sizes
#   bench/run.sh --smoke              20k rows, about a minute; exits 1 if a correctness check fails
#   bench/run.sh --naive-cap-seconds 300 1000000
#
# Uses TEST_DATABASE_URL when set, else an embedded PostgreSQL 17 (see tests/TestDatabase.java).
# Tool logs and CSV summaries go to bench/logs/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# The tool runs in its own JVM from the jar JBang builds, exactly as `jbang backfill_codex_usage_cache.java` would.
if ! build_log="$(./jbang build backfill_codex_usage_cache.java 2>&1)"; then
  printf '%s\n' "$build_log" >&2
  exit 1
fi
BENCH_TOOL_CLASSPATH="$(./jbang info classpath backfill_codex_usage_cache.java | tail -n 1)"
export BENCH_TOOL_CLASSPATH

exec ./jbang bench/bench.java "$@"
