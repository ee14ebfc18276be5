#!/bin/busybox sh
# The GPU test guest's /init: load virtio-gpu, draw the known picture, report, power off.
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sys /sys
/bin/busybox mount -t devtmpfs dev /dev
echo "gpu-guest: init at $(/bin/busybox cut -d' ' -f1 /proc/uptime) s"
while read -r module; do
  /bin/busybox insmod "/modules/$module" || echo "gpu-guest: insmod $module failed"
done < /modules.list
i=0
while [ ! -e /dev/fb0 ] && [ $i -lt 300 ]; do /bin/busybox usleep 100000; i=$((i + 1)); done
if [ -e /dev/fb0 ]; then
  # fbcon's blinking cursor draws into the framebuffer too: stop it before drawing.
  echo 0 > /sys/class/graphics/fbcon/cursor_blink 2>/dev/null
  /bin/draw-fb /dev/fb0
  # Give fbdev's deferred flush time to reach the device before powering off.
  /bin/busybox sleep 2
else
  echo "gpu-guest: no /dev/fb0 after 30 s"
fi
echo "gpu-guest: done at $(/bin/busybox cut -d' ' -f1 /proc/uptime) s"
/bin/busybox reboot -f
