#!/bin/busybox sh
# The GPU test guest's /init: load virtio-gpu (when it is a module), draw a picture, report, reboot.
# Kernel command line:
#   gpu_guest.picture=NAME  the picture draw-fb draws (default gradient-xor)
#   gpu_guest.ask=1         ask the host on the console instead: print `gpu-guest: picture?`,
#                           read the picture's name; after drawing print `gpu-guest: next?` and
#                           wait for a line before rebooting. The host drives each boot (a picture
#                           per boot across reboots, QEMU killed while the scanout is shown).
#                           Answered `drm`: run draw-drm on /dev/dri/card0 instead of draw-fb, its
#                           commands read from the console until `quit` (see draw-drm.c).
# Every busybox run is an exec, ~1 s each nested under TCG: shell builtins where they do.
uptime() { read -r up _ < /proc/uptime; echo "$up"; }
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sys /sys
/bin/busybox mount -t devtmpfs dev /dev 2>/dev/null
echo "gpu-guest: init at $(uptime) s"
# A kernel with virtio-gpu built in (the GPU guest kernel) has nothing to load: no list, or an empty one.
if [ -s /modules.list ]; then
  while read -r module; do
    [ -n "$module" ] || continue
    /bin/busybox insmod "/modules/$module" || echo "gpu-guest: insmod $module failed"
  done < /modules.list
fi
picture=gradient-xor
ask=0
read -r cmdline < /proc/cmdline
for arg in $cmdline; do
  case "$arg" in
    gpu_guest.picture=*) picture="${arg#gpu_guest.picture=}" ;;
    gpu_guest.ask=1) ask=1 ;;
  esac
done
if [ $ask = 1 ]; then
  echo "gpu-guest: picture?"
  read -r -t 120 answer && picture="$answer"
fi
i=0
while [ ! -e /dev/fb0 ] && [ $i -lt 300 ]; do /bin/busybox usleep 100000; i=$((i + 1)); done
if [ -e /dev/fb0 ]; then
  # fbcon's blinking cursor draws into the framebuffer too: stop it before drawing.
  echo 0 > /sys/class/graphics/fbcon/cursor_blink 2>/dev/null
  if [ "$picture" = drm ]; then
    /bin/draw-drm /dev/dri/card0
  else
    /bin/draw-fb /dev/fb0 "$picture"
  fi
  # Give fbdev's deferred flush time to reach the device before rebooting (an asking host holds
  # the guest at its next prompt anyway).
  [ $ask = 1 ] || /bin/busybox sleep 2
else
  echo "gpu-guest: no /dev/fb0 after 30 s"
fi
echo "gpu-guest: done at $(uptime) s"
if [ $ask = 1 ]; then
  echo "gpu-guest: next?"
  read -r -t 600 answer
fi
/bin/busybox reboot -f
