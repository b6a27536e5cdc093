#!/usr/bin/env bash
# Proves the packaged tool: builds the payload with build_payload.sh into a temp
# folder laid out like /app, then runs it there with an empty environment and a
# PATH holding no java and no jbang: --help, a dry-run against a real PostgreSQL,
# and a startup timing comparison.
#
#   tests/packaged_check.sh
#
# Database: CHECK_DATABASE_URL (postgres:// URL of a database holding eligible
# rows; CHECK_CUTOFF overrides the cutoff, default now minus 1 day). Unset: the
# script starts tests/packaged_check_db.java (embedded PostgreSQL unless
# TEST_DATABASE_URL or a Docker engine is there) with ~5,000 seeded rows.
# JAVA_HOME picks the JDK that builds the payload, as for build_payload.sh.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
name=backfill_codex_usage_cache
runs=5

tmp="$(mktemp -d)"
app="$tmp/app"
empty_bin="$tmp/empty-bin"
mkdir -p "$app" "$empty_bin"
db_pid=""

cleanup() {
  if [ -n "$db_pid" ]; then
    exec 3>&- || true
    for _ in $(seq 30); do kill -0 "$db_pid" 2>/dev/null || break; sleep 1; done
    if kill -0 "$db_pid" 2>/dev/null; then kill "$db_pid" 2>/dev/null || true; fi
    wait "$db_pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
pass() { echo "ok: $*"; }

# The tool exactly as the image runs it: from /app, nothing inherited.
run_app() { (cd "$app" && env -i PATH="$empty_bin" "$@"); }

median_ms() {
  local times=() start end
  for _ in $(seq "$runs"); do
    start=$(date +%s%N)
    "$@" >/dev/null 2>&1 || fail "timed command failed: $*"
    end=$(date +%s%N)
    times+=($(( (end - start) / 1000000 )))
  done
  printf '%s\n' "${times[@]}" | sort -n | sed -n "$(( (runs + 1) / 2 ))p"
}

if [ -n "${CHECK_DATABASE_URL:-}" ]; then
  db_url="$CHECK_DATABASE_URL"
  cutoff="${CHECK_CUTOFF:-$(date -u -d '1 day ago' +%Y-%m-%dT%H:%M:%SZ)}"
else
  # Started first so the database comes up while the payload builds. Its stdin
  # is a FIFO held open on fd 3; closing fd 3 tells it to stop.
  mkfifo "$tmp/db.in"
  (cd "$repo" && exec ./jbang tests/packaged_check_db.java <"$tmp/db.in" >"$tmp/db.out" 2>"$tmp/db.err") &
  db_pid=$!
  exec 3<>"$tmp/db.in"
fi

# Something else already in /app must survive the build.
printf '#!/bin/sh\necho migrate\n' >"$app/migrate"
"$repo/build_payload.sh" "$app" || fail "build_payload.sh failed"
if [ ! -x "$app/$name" ] || [ ! -d "$app/$name.d/runtime" ]; then
  fail "payload layout: no $app/$name or $app/$name.d/runtime"
fi
[ -f "$app/migrate" ] || fail "build_payload.sh removed an unrelated file from OUTDIR"
modules="$("$app/$name.d/runtime/bin/java" --list-modules)"
for m in jdk.crypto.ec jdk.unsupported java.sql; do
  grep -q "^$m@" <<<"$modules" || fail "runtime lacks module $m"
done
pass "payload built: $(du -sh "$app/$name" "$app/$name.d" -c | tail -1 | cut -f1) (runtime $(du -sh "$app/$name.d/runtime" | cut -f1))"

set +e
help_out="$(run_app ./$name --help 2>&1)"
rc=$?
set -e
[ "$rc" -eq 0 ] || { printf '%s\n' "$help_out" >&2; fail "--help exited $rc"; }
for text in "Usage: $name" "--cutoff" "--execute" "Exit codes"; do
  grep -qF -- "$text" <<<"$help_out" || { printf '%s\n' "$help_out" >&2; fail "--help output lacks '$text'"; }
done
pass "--help from $app with PATH=$empty_bin (no java, no jbang)"

if [ -n "$db_pid" ]; then
  echo "waiting for tests/packaged_check_db.java (first run downloads PostgreSQL binaries)..."
  db_url=""
  for _ in $(seq 600); do
    last="$(tail -n 1 "$tmp/db.out" 2>/dev/null || true)"
    case $last in postgres://*) db_url="$last"; break ;; esac
    kill -0 "$db_pid" 2>/dev/null || break
    sleep 1
  done
  [ -n "$db_url" ] || { tail -n 20 "$tmp/db.err" >&2; fail "tests/packaged_check_db.java printed no database URL"; }
  cutoff="$(sed -n 's/^cutoff=//p' "$tmp/db.out")"
  tail -n 1 "$tmp/db.err"
fi

headers=(workspace_id date_utc rows input_before input_after input_tokens_removed clamped_rows)
for format in table csv json; do
  set +e
  run_app DATABASE_URL="$db_url" ./$name --cutoff "$cutoff" --format "$format" >"$tmp/dry.$format" 2>"$tmp/dry.$format.err"
  rc=$?
  set -e
  [ "$rc" -eq 0 ] || { cat "$tmp/dry.$format.err" >&2; fail "dry-run --format $format exited $rc"; }
  for h in "${headers[@]}"; do
    case $format in
      table) grep -qE "(^|[| ])$h([| ]|$)" "$tmp/dry.$format" ;;
      csv) head -n 1 "$tmp/dry.$format" | tr , '\n' | grep -qx "$h" ;;
      json) grep -q "\"$h\"" "$tmp/dry.$format" ;;
    esac || { cat "$tmp/dry.$format" "$tmp/dry.$format.err" >&2; fail "dry-run --format $format has no '$h' column"; }
  done
  grep -q 'dry-run complete' "$tmp/dry.$format.err" || { cat "$tmp/dry.$format.err" >&2; fail "dry-run --format $format did not report completion"; }
done
sed -n '2p' "$tmp/dry.table"
grep -E '^ *TOTAL' "$tmp/dry.table" || true
pass "dry-run through the launcher (table, csv, json) with DATABASE_URL, cutoff $cutoff"

help_ms="$(median_ms run_app ./$name --help)"
version_ms="$(median_ms run_app "$app/$name.d/runtime/bin/java" -version)"
echo "startup: ./$name --help median ${help_ms} ms, runtime/bin/java -version median ${version_ms} ms ($runs runs each)"
pass "packaged check complete"
