#!/usr/bin/env bash
# Installs what the VM bench needs from Debian: QEMU, the 6.1 kernel and headers, the
# bookworm-backports 6.12 kernel and headers (udmabuf built in: our reference), busybox, kmod,
# cpio, and linux-source-6.1 with the tools to build the debug kernel. Idempotent and quiet
# when everything is already there.
# Backports is added with the URI of the machine's own Debian entry: no host is written here.
set -euo pipefail

log() { echo "setup-host: $*" >&2; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# The first URI of the machine's main Debian suite, from deb822 or one-line sources.
debian_uri() {
  local f uri
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    uri=$(awk '
      /^[[:space:]]*$/ { if (u != "" && s ~ /(^| )bookworm( |$)/) { print u; exit } u=""; s="" }
      /^URIs:/ { u=$2 }
      /^Suites:/ { $1=""; s=$0 " " }
      END { if (u != "" && s ~ /(^| )bookworm( |$)/) print u }' "$f" | head -n1)
    if [ -n "$uri" ]; then echo "$uri"; return; fi
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    uri=$(awk '$1 == "deb" && $3 == "bookworm" { for (i = 2; i <= NF; i++) if ($i ~ /:\/\//) { print $i; exit } }' "$f" | head -n1)
    if [ -n "$uri" ]; then echo "$uri"; return; fi
  done
}

BACKPORTS_LIST=/etc/apt/sources.list.d/guest-dmabuf-backports.list
# linux-source-6.1 and the kernel build tools: the debug kernel (vm/debug-kernel.ts, --kernel debug).
BASE_PKGS=(qemu-system-x86 linux-image-amd64 linux-headers-amd64 busybox-static kmod cpio xz-utils build-essential cmake
  linux-source-6.1 bc flex bison libelf-dev libssl-dev)
BP_PKGS=(linux-image-amd64 linux-headers-amd64)

have_all() {
  local status
  status=$(dpkg-query -W -f='${Status}\n' "${BASE_PKGS[@]}" 2>/dev/null) || return 1
  [ "$(grep -c 'install ok installed' <<<"$status")" -eq "${#BASE_PKGS[@]}" ] || return 1
  # A 6.12 image and its headers from backports.
  compgen -G '/boot/vmlinuz-6.12*' >/dev/null || return 1
  compgen -G '/usr/src/linux-headers-6.12*-amd64' >/dev/null || return 1
  compgen -G '/boot/vmlinuz-6.1.*' >/dev/null || return 1
  compgen -G '/usr/src/linux-headers-6.1.*-amd64' >/dev/null || return 1
}

if have_all; then exit 0; fi

if [ ! -f "$BACKPORTS_LIST" ]; then
  uri=$(debian_uri)
  if [ -z "$uri" ]; then
    log "cannot find the machine's Debian bookworm source entry to derive backports from"; exit 1
  fi
  log "adding bookworm-backports from the machine's Debian source"
  echo "deb $uri bookworm-backports main" | $SUDO tee "$BACKPORTS_LIST" >/dev/null
fi

export DEBIAN_FRONTEND=noninteractive
log "apt-get update"
$SUDO apt-get update -qq >/dev/null
log "installing ${BASE_PKGS[*]}"
$SUDO apt-get install -y -qq --no-install-recommends "${BASE_PKGS[@]}" >/dev/null
log "installing the bookworm-backports kernel and headers"
$SUDO apt-get install -y -qq --no-install-recommends -t bookworm-backports "${BP_PKGS[@]}" >/dev/null
have_all || { log "installation finished but a kernel image or headers are still missing"; exit 1; }
log "done"
