#!/usr/bin/env bash
# Builds the self-contained backfill_codex_usage_cache payload: a trimmed Java
# runtime, the exported jar with its lib/, and a /bin/sh launcher.
#
#   ./build_payload.sh OUTDIR
#
# OUTDIR is laid out exactly as the files sit under /app in the backend image:
#   OUTDIR/backfill_codex_usage_cache      launcher (needs only /bin/sh)
#   OUTDIR/backfill_codex_usage_cache.d/   runtime/, backfill_codex_usage_cache.jar, lib/
# Only those two entries of OUTDIR are replaced; anything else in it is left alone.
#
# JAVA_HOME selects the JDK whose javac, jdeps and jlink are used (default: the
# JDK of `javac` on PATH). The runtime is built for the platform of that JDK, so
# for the Alpine backend image this must run on a musl JDK.
set -euo pipefail

name=backfill_codex_usage_cache
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

die() { echo "build_payload: $*" >&2; exit 1; }

if [ $# -ne 1 ] || [ -z "$1" ]; then echo "usage: $0 OUTDIR" >&2; exit 2; fi
outdir="$1"

if [ -z "${JAVA_HOME:-}" ]; then
  javac_path="$(command -v javac)" || die "no JAVA_HOME and no javac on PATH; set JAVA_HOME to a JDK 17 or newer"
  JAVA_HOME="$(dirname "$(dirname "$(readlink -f "$javac_path")")")"
fi
for tool in java javac jdeps jlink; do
  [ -x "$JAVA_HOME/bin/$tool" ] || die "$JAVA_HOME/bin/$tool not found; JAVA_HOME must point to a full JDK"
done
export JAVA_HOME PATH="$JAVA_HOME/bin:$PATH"

java_feature="$(sed -n 's/^JAVA_VERSION="\([0-9]*\).*/\1/p' "$JAVA_HOME/release")"
[ -n "$java_feature" ] || die "cannot read JAVA_VERSION from $JAVA_HOME/release"
[ "$java_feature" -ge 17 ] || die "JDK $java_feature at $JAVA_HOME is too old; need 17 or newer"
echo "build_payload: JDK $java_feature at $JAVA_HOME"

work="$(mktemp -d)"
stage=""
cleanup() { rm -rf "$work"; if [ -n "$stage" ]; then rm -rf "$stage"; fi; }
trap cleanup EXIT

# Portable export (jar + lib/ + Class-Path manifest): fatjar cannot handle a
# default-package main class next to dependencies that carry module-info.class.
(cd "$repo" && ./jbang export portable --force -O "$work/export/$name.jar" "$name.java")
if [ ! -f "$work/export/$name.jar" ] || [ ! -d "$work/export/lib" ]; then
  die "jbang export portable produced no $name.jar and lib/"
fi

modules="$(jdeps --ignore-missing-deps --multi-release "$java_feature" --print-module-deps \
  --class-path "$work/export/lib/*" "$work/export/$name.jar")"
[ -n "$modules" ] || die "jdeps printed no module list"
echo "build_payload: jdeps modules: $modules"

# java.desktop (PGpoint, ICU Bidi, commons-math geometry) and java.compiler
# (error_prone annotations) are only reached by code paths the tool never runs;
# packaged_check.sh runs the table summary, dry-run and TLS paths without them.
# jdk.crypto.ec is invisible to jdeps but TLS to a server with an EC
# certificate fails without it on JDK 17; sun.misc.Signal needs jdk.unsupported.
modules="$(printf '%s\n' "${modules//,/$'\n'}" jdk.crypto.ec jdk.unsupported \
  | grep -vx -e java.desktop -e java.compiler | sort -u | tr '\n' , | sed 's/,$//')"
echo "build_payload: runtime modules: $modules"

if [ "$java_feature" -ge 21 ]; then compress=zip-6; else compress=2; fi
mkdir -p "$outdir"
stage="$(mktemp -d "$outdir/.$name.build.XXXXXX")"
home="$stage/$name.d"
mkdir -p "$home"

jlink_args=(--add-modules "$modules" --strip-debug --no-header-files --no-man-pages
  --compress="$compress" --output "$home/runtime")
# The default CDS archive of the runtime's own classes cut `--help` from
# ~190 ms to ~150 ms and survives moving the runtime (unlike an AppCDS archive,
# which is tied to the absolute jar paths of the training run).
if ! jlink "${jlink_args[@]}" --generate-cds-archive; then
  echo "build_payload: warning: jlink --generate-cds-archive failed; building the runtime without a CDS archive" >&2
  rm -rf "$home/runtime"
  jlink "${jlink_args[@]}"
fi
# Only used when the heap is 32 GB or more, which the launcher never asks for.
rm -f "$home/runtime/lib/server/classes_nocoops.jsa"

cp "$work/export/$name.jar" "$home/"
cp -R "$work/export/lib" "$home/lib"

cat > "$stage/$name" <<'LAUNCHER'
#!/bin/sh
# Runs backfill_codex_usage_cache on the Java runtime bundled next to this file.
# Extra JVM options: BACKFILL_JAVA_OPTS (appended, so they override the defaults).
set -eu

self=$0
while [ -L "$self" ]; do
  link=$(readlink "$self")
  case $link in
    /*) self=$link ;;
    *) self=${self%/*}/$link ;;
  esac
done
case $self in
  */*) dir=${self%/*} ;;
  *) dir=. ;;
esac
dir=$(CDPATH='' cd -P -- "${dir:-/}" && pwd -P)

home=$dir/backfill_codex_usage_cache.d
for required in "$home/runtime/bin/java" "$home/backfill_codex_usage_cache.jar" "$home/lib"; do
  if [ ! -e "$required" ]; then
    echo "backfill_codex_usage_cache: broken install: $required is missing (rebuild the payload with build_payload.sh)" >&2
    exit 1
  fi
done

# Heap is bounded so a Job stays well under a 300 MB memory limit (peak RSS of a
# dry-run was ~90 MB); C1 only because the work is waiting on PostgreSQL, and
# it starts faster and uses less memory; no hsperfdata files so a read-only
# root filesystem is fine; UTF-8 output whatever the image's locale.
set -f
# Java decodes the arguments with the locale's charset; with no locale (env -i,
# a bare container) that is ASCII and a value such as 500µs would be mangled.
if [ -z "${LC_ALL:-}${LC_CTYPE:-}${LANG:-}" ]; then
  export LC_ALL=C.UTF-8
fi
# shellcheck disable=SC2086
exec "$home/runtime/bin/java" \
  -XX:+UseSerialGC -Xms16m -Xmx192m -XX:TieredStopAtLevel=1 \
  -XX:+ExitOnOutOfMemoryError -XX:-UsePerfData -Xshare:auto -Dfile.encoding=UTF-8 \
  ${BACKFILL_JAVA_OPTS:-} \
  -jar "$home/backfill_codex_usage_cache.jar" "$@"
LAUNCHER
chmod 755 "$stage/$name"
# The image runs the tool as its own (possibly non-root) user.
chmod -R u+rwX,go+rX,go-w "$stage"

# Fails the build now rather than in the cluster (wrong class file version from
# a JBang cache built by another JDK, a module missing for startup, ...).
if ! help_out="$(env -i PATH=/nonexistent "$stage/$name" --help 2>&1)"; then
  printf '%s\n' "$help_out" >&2
  die "the packaged tool failed to print --help"
fi
case $help_out in
  *"Usage: $name"*) ;;
  *) printf '%s\n' "$help_out" >&2; die "the packaged tool's --help printed no usage text" ;;
esac

rm -rf "${outdir:?}/$name" "${outdir:?}/$name.d"
mv "$stage/$name.d" "$outdir/$name.d"
mv "$stage/$name" "$outdir/$name"
rmdir "$stage"
stage=""

size() { du -sh "$1" | cut -f1; }
echo "build_payload: wrote $outdir/$name and $outdir/$name.d"
echo "build_payload: payload $(du -shc "$outdir/$name" "$outdir/$name.d" | tail -1 | cut -f1)" \
  "(runtime $(size "$outdir/$name.d/runtime"), lib $(size "$outdir/$name.d/lib"), jar $(size "$outdir/$name.d/$name.jar"))"
