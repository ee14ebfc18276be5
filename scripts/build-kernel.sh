#!/usr/bin/env bash
# Builds a kernel from Debian's linux-source-6.1 on top of `make tinyconfig` plus a configuration
# fragment, for the VM runner: the debug kernel (vm/debug-kernel.ts) and the GPU test guest's
# kernel (vm/gpu-guest-kernel.ts). The TypeScript side (vm/kernel-build.ts) owns the cache key;
# usable alone:
#   scripts/build-kernel.sh NAME TARBALL SRCDIR FRAGMENT BUILDDIR JOBS TARGET OUTPUT...
# NAME     names the log lines and the marker files: BUILDDIR/.NAME-release (kernelrelease) and,
#          written last, BUILDDIR/.NAME-done
# TARBALL  /usr/src/linux-source-6.1.tar.xz (package linux-source-6.1)
# SRCDIR   where the tarball is unpacked once, shared by every build (kept: build trees refer to it)
# FRAGMENT applied on top of `make tinyconfig`; every option it sets or unsets is checked in the
#          final .config
# BUILDDIR the O= build tree
# TARGET   what to make: `all` (vmlinux, bzImage, modules, what `make M=...` needs) or `vmlinux`
# OUTPUT   files under BUILDDIR the build must have produced
set -euo pipefail

NAME=$1 TARBALL=$2 SRC=$3 FRAGMENT=$4 BUILD=$5 JOBS=$6 TARGET=$7
shift 7
OUTPUTS=("$@")
log() { echo "$NAME: $*" >&2; }
started=$(date +%s)

if [ ! -f "$SRC/Makefile" ]; then
  log "unpacking $TARBALL into $SRC"
  parent=$(dirname "$SRC")
  mkdir -p "$parent"
  tmp=$(mktemp -d "$parent/unpack.XXXXXX")
  nice -n 19 tar -xf "$TARBALL" -C "$tmp"
  top=$(find "$tmp" -mindepth 1 -maxdepth 1 -type d | head -n1)
  rm -rf "$SRC"
  mv "$top" "$SRC"
  rm -rf "$tmp"
fi

mkdir -p "$BUILD"
MAKE=(nice -n 19 make -s -C "$SRC" O="$BUILD")
log "configuring: tinyconfig + $(basename "$FRAGMENT")"
"${MAKE[@]}" tinyconfig >/dev/null
"$SRC/scripts/kconfig/merge_config.sh" -m -O "$BUILD" "$BUILD/.config" "$FRAGMENT" >"$BUILD/merge_config.log" 2>&1
"${MAKE[@]}" olddefconfig >/dev/null

# Every option the fragment asks for must be in the result as asked.
missing=0
while IFS= read -r line; do
  if [[ $line =~ ^(CONFIG_[A-Za-z0-9_]+)=(.*)$ ]]; then
    want="${BASH_REMATCH[1]}=${BASH_REMATCH[2]}"
    if grep -qx -- "$want" "$BUILD/.config"; then log "  ok       $want"
    else log "  MISSING  $want (have: $(grep -E "^(# )?${BASH_REMATCH[1]}[= ]" "$BUILD/.config" || echo unset))"; missing=1; fi
  elif [[ $line =~ ^#\ (CONFIG_[A-Za-z0-9_]+)\ is\ not\ set$ ]]; then
    if grep -q -- "^${BASH_REMATCH[1]}=" "$BUILD/.config"; then log "  MISSING  ${BASH_REMATCH[1]} off"; missing=1
    else log "  ok       ${BASH_REMATCH[1]} off"; fi
  fi
done <"$FRAGMENT"
if [ "$missing" -ne 0 ]; then
  log "the configuration lacks options the fragment asks for (see above and $BUILD/merge_config.log)"
  exit 1
fi

log "building $TARGET with $JOBS jobs under nice 19"
# make -s is silent for the whole build: say every minute that it is still going, and how far.
"${MAKE[@]}" -j"$JOBS" "$TARGET" &
build=$!
while sleep 60 && kill -0 "$build" 2>/dev/null; do
  log "  still building: $(( ($(date +%s) - started) / 60 )) min, $(find "$BUILD" -name '*.o' 2>/dev/null | wc -l) objects so far"
done
wait "$build"
for f in "${OUTPUTS[@]}"; do
  [ -e "$BUILD/$f" ] || { log "the build finished without $f"; exit 1; }
done
make -s -C "$SRC" O="$BUILD" kernelrelease >"$BUILD/.$NAME-release"
date -u +%FT%TZ >"$BUILD/.$NAME-done"
log "built $(cat "$BUILD/.$NAME-release") in $(( $(date +%s) - started )) s"
