#!/usr/bin/env bash
# Installs what the VM bench needs from Debian: QEMU, the 6.1 kernel and headers, the
# bookworm-backports 6.12 kernel and headers (udmabuf built in: our reference), busybox, kmod,
# cpio; linux-source-6.1 with the tools to build the debug kernel; and, for the Wayland tests,
# weston 14 with Mesa's GL stack (llvmpipe), libwayland-dev and wayland-protocols (the protocol
# XML), all from bookworm-backports: bookworm's weston 10 renders with pixman and cannot import
# dma-bufs, and once weston 14 is in, libwayland-dev must match its libwayland; Mesa's lavapipe
# (mesa-vulkan-drivers, bookworm-backports: 25.x, whose llvmpipe exports dma-bufs through
# /dev/udmabuf; bookworm's 22.3 cannot) with bookworm's Vulkan loader headers (libvulkan-dev),
# for the Mesa consumer test (test/vm/mesa-udmabuf.test.ts). Idempotent and
# quiet when everything is already there.
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
# libvirglrenderer1: QEMU 10.0's contrib vhost-user-gpu links it (bench:gpu runs that back end).
BASE_PKGS=(qemu-system-x86 linux-image-amd64 linux-headers-amd64 busybox-static kmod cpio xz-utils build-essential cmake
  linux-source-6.1 bc flex bison libelf-dev libssl-dev libvirglrenderer1)
BP_PKGS=(linux-image-amd64 linux-headers-amd64)
# weston's GL renderer needs EGL + GLES and Mesa's DRI drivers (llvmpipe when there is no GPU).
WAYLAND_PKGS=(weston libgl1-mesa-dri libegl1 libegl-mesa0 libgles2 libwayland-dev wayland-protocols)
# lavapipe from backports (same Mesa as the GL stack above); the loader's headers are bookworm's.
MESA_VK_PKGS=(mesa-vulkan-drivers)
VULKAN_DEV_PKGS=(libvulkan-dev)

have_all() {
  local status
  status=$(dpkg-query -W -f='${Status}\n' "${BASE_PKGS[@]}" 2>/dev/null) || return 1
  [ "$(grep -c 'install ok installed' <<<"$status")" -eq "${#BASE_PKGS[@]}" ] || return 1
  # A 6.12 image and its headers from backports.
  compgen -G '/boot/vmlinuz-6.12*' >/dev/null || return 1
  compgen -G '/usr/src/linux-headers-6.12*-amd64' >/dev/null || return 1
  compgen -G '/boot/vmlinuz-6.1.*' >/dev/null || return 1
  compgen -G '/usr/src/linux-headers-6.1.*-amd64' >/dev/null || return 1
  status=$(dpkg-query -W -f='${Status}\n' "${WAYLAND_PKGS[@]}" 2>/dev/null) || return 1
  [ "$(grep -c 'install ok installed' <<<"$status")" -eq "${#WAYLAND_PKGS[@]}" ] || return 1
  # weston 14 (backports), not bookworm's 10.
  [[ "$(weston --version 2>/dev/null)" =~ ^weston\ 1[4-9] ]] || return 1
  [ -f /usr/share/wayland/wayland.xml ] || return 1
  [ -f /usr/share/wayland-protocols/stable/linux-dmabuf/linux-dmabuf-v1.xml ] || return 1
  status=$(dpkg-query -W -f='${Status}\n' "${MESA_VK_PKGS[@]}" "${VULKAN_DEV_PKGS[@]}" 2>/dev/null) || return 1
  [ "$(grep -c 'install ok installed' <<<"$status")" -eq $((${#MESA_VK_PKGS[@]} + ${#VULKAN_DEV_PKGS[@]})) ] || return 1
  # lavapipe of Mesa 24.1 or newer (backports), the first with dma-buf export through udmabuf.
  [[ "$(dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null)" =~ ^([0-9]+)\.([0-9]+) ]] || return 1
  (( BASH_REMATCH[1] > 24 || (BASH_REMATCH[1] == 24 && BASH_REMATCH[2] >= 1) )) || return 1
  [ -f /usr/share/vulkan/icd.d/lvp_icd.json ] || return 1
}

# QEMU 10.0 from bookworm-backports, unpacked beside the system 7.2 (never installed: the
# system QEMU stays 7.2). qemu-glue/qemu-binaries.ts finds it here; GUEST_DMABUF_QEMU_10_0_ROOT
# overrides the folder.
QEMU10_PKGS=(qemu-system-x86 qemu-system-common qemu-system-data qemu-system-gui)
QEMU10_ROOT=${GUEST_DMABUF_QEMU_10_0_ROOT:-/var/cache/guest-dmabuf/qemu-10.0}

have_qemu10() {
  [ -x "$QEMU10_ROOT/usr/bin/qemu-system-x86_64" ] && [ -f "$QEMU10_ROOT/.complete" ]
}

# Adds bookworm-backports (once) and refreshes the package lists (once per run).
APT_UPDATED=""
ensure_backports() {
  if [ ! -f "$BACKPORTS_LIST" ]; then
    local uri
    uri=$(debian_uri)
    if [ -z "$uri" ]; then
      log "cannot find the machine's Debian bookworm source entry to derive backports from"; exit 1
    fi
    log "adding bookworm-backports from the machine's Debian source"
    echo "deb $uri bookworm-backports main" | $SUDO tee "$BACKPORTS_LIST" >/dev/null
  fi
  if [ -z "$APT_UPDATED" ]; then
    log "apt-get update"
    $SUDO apt-get update -qq >/dev/null
    APT_UPDATED=1
  fi
}

install_base() {
  ensure_backports
  export DEBIAN_FRONTEND=noninteractive
  log "installing ${BASE_PKGS[*]}"
  $SUDO apt-get install -y -qq --no-install-recommends "${BASE_PKGS[@]}" >/dev/null
  log "installing the bookworm-backports kernel and headers"
  $SUDO apt-get install -y -qq --no-install-recommends -t bookworm-backports "${BP_PKGS[@]}" >/dev/null
  log "installing weston 14, Mesa, libwayland-dev and wayland-protocols from bookworm-backports"
  $SUDO apt-get install -y -qq --no-install-recommends -t bookworm-backports "${WAYLAND_PKGS[@]}" >/dev/null
  log "installing lavapipe (mesa-vulkan-drivers) from bookworm-backports and libvulkan-dev"
  $SUDO apt-get install -y -qq --no-install-recommends -t bookworm-backports "${MESA_VK_PKGS[@]}" >/dev/null
  $SUDO apt-get install -y -qq --no-install-recommends "${VULKAN_DEV_PKGS[@]}" >/dev/null
  have_all || { log "installation finished but a kernel image or headers are still missing"; exit 1; }
}

# A subshell, so that its EXIT trap removes the download folder however it ends.
install_qemu10() (
  ensure_backports
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  log "downloading QEMU 10.0 (${QEMU10_PKGS[*]}) from bookworm-backports"
  (cd "$tmp" && apt-get download -qq -t bookworm-backports "${QEMU10_PKGS[@]}" >/dev/null)
  $SUDO rm -rf "$QEMU10_ROOT.new"
  $SUDO mkdir -p "$QEMU10_ROOT.new"
  for deb in "$tmp"/*.deb; do $SUDO dpkg -x "$deb" "$QEMU10_ROOT.new"; done
  $SUDO touch "$QEMU10_ROOT.new/.complete"
  $SUDO rm -rf "$QEMU10_ROOT"
  $SUDO mv "$QEMU10_ROOT.new" "$QEMU10_ROOT"
  log "QEMU 10.0 unpacked in $QEMU10_ROOT"
)

if have_all && have_qemu10; then exit 0; fi
have_all || install_base
have_qemu10 || install_qemu10
log "done"
