#!/usr/bin/env bash
# Builds the debug kernel (KASAN, lockdep, kmemleak, DMA-API debug, fault injection) from
# Debian's linux-source-6.1 for the VM runner. Called by vm/debug-kernel.ts, which owns the cache
# key; usable alone:
#   scripts/build-debug-kernel.sh TARBALL SRCDIR FRAGMENT BUILDDIR [JOBS]
# TARBALL  /usr/src/linux-source-6.1.tar.xz (package linux-source-6.1)
# SRCDIR   where the tarball is unpacked once (kept: the build tree refers to it)
# FRAGMENT vm/debug-kernel.config, applied on top of `make tinyconfig`
# BUILDDIR the O= build tree: vmlinux, arch/x86/boot/bzImage, System.map, Module.symvers, and
#          what `make -C BUILDDIR M=...` needs to build an out-of-tree module. Written last:
#          BUILDDIR/.debug-kernel-done.
set -euo pipefail

TARBALL=$1 SRC=$2 FRAGMENT=$3 BUILD=$4 JOBS=${5:-3}
log() { echo "debug-kernel: $*" >&2; }
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

log "building with $JOBS jobs under nice 19 (about 14 min of CPU; 25 min wall on a loaded 2-core machine)"
# make -s is silent for the whole build: say every minute that it is still going, and how far.
"${MAKE[@]}" -j"$JOBS" all &
build=$!
while sleep 60 && kill -0 "$build" 2>/dev/null; do
  log "  still building: $(( ($(date +%s) - started) / 60 )) min, $(find "$BUILD" -name '*.o' 2>/dev/null | wc -l) objects so far"
done
wait "$build"
for f in vmlinux System.map Module.symvers arch/x86/boot/bzImage scripts/mod/modpost; do
  [ -e "$BUILD/$f" ] || { log "the build finished without $f"; exit 1; }
done
make -s -C "$SRC" O="$BUILD" kernelrelease >"$BUILD/.debug-kernel-release"
date -u +%FT%TZ >"$BUILD/.debug-kernel-done"
log "built $(cat "$BUILD/.debug-kernel-release") in $(( $(date +%s) - started )) s"
