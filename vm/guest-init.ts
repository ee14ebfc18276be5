// The /init of the VM's initramfs (busybox sh). It mounts the host's root read-only over 9p,
// gives the guest writable scratch, loads the project's module, runs the command from the
// control share in a chroot, then records the exit status, the module unload and the kernel
// log back on the control share, then a completion marker (vm/guest-report.ts), and powers off.
export const CONTROL_MOUNT = '/run/guest-dmabuf';
export const START_MARKER = '@@guest-dmabuf-vm: command starts@@';
export const END_MARKER = '@@guest-dmabuf-vm: command ended@@';

/**
 * A shell function, \`module_holders DEVNAME\`: one line per process that keeps the module from
 * unloading: the device open, a dma-buf of ours (fdinfo's exp_name) as an fd, or any dma-buf
 * mapped (its exporter cannot be told from /proc/PID/maps). The runner prints them when rmmod
 * fails; none listed means a reference the kernel itself still holds.
 */
export const MODULE_HOLDERS = `module_holders() {
  for p in /proc/[0-9]*; do
    pid=\${p#/proc/}
    [ "$pid" = "$$" ] && continue
    comm=$(cat $p/comm 2>/dev/null) || continue
    for f in $p/fd/*; do
      l=$(readlink $f 2>/dev/null) || continue
      case "$l" in
        */dev/$1) echo "pid $pid ($comm) has /dev/$1 open as fd \${f##*/}" ;;
        /dmabuf:*|anon_inode:dmabuf) grep -q '^exp_name:[[:space:]]*guest_udmabuf' $p/fdinfo/\${f##*/} 2>/dev/null &&
          echo "pid $pid ($comm) holds a guest_udmabuf dma-buf as fd \${f##*/}" ;;
      esac
    done
    n=$(grep -c ' /dmabuf:' $p/maps 2>/dev/null)
    [ "\${n:-0}" -gt 0 ] && echo "pid $pid ($comm) maps $n dma-buf range(s)"
  done
  return 0
}`;

export const GUEST_INIT = `#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/sbin
mkdir -p /proc /sys /dev /newroot
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /modules.list); do insmod "/modules/$m" || echo "init: insmod $m failed"; done

die() { echo "init: $*"; reboot -f; }
opts=trans=virtio,version=9p2000.L,msize=512000
mount -t 9p -o $opts,ro,cache=loose hostroot /newroot || die "cannot mount the host root"
R=/newroot
mount -t proc proc $R/proc
mount -t sysfs sys $R/sys
mount -t devtmpfs dev $R/dev
mkdir -p $R/dev/pts $R/dev/shm 2>/dev/null
mount -t devpts devpts $R/dev/pts
mount -t tmpfs tmpfs $R/dev/shm
mount -t debugfs debugfs $R/sys/kernel/debug 2>/dev/null
# Keep the host's /tmp reachable: a project or cwd under it is bound back in below.
mkdir -p /hosttmp && mount --bind $R/tmp /hosttmp
for d in tmp run var/tmp; do mount -t tmpfs -o mode=1777 tmpfs $R/$d; done
mkdir -p $R${CONTROL_MOUNT}
mount -t 9p -o $opts,cache=none control $R${CONTROL_MOUNT} || die "cannot mount the control share"
C=$R${CONTROL_MOUNT}
i=0
while read -r dir; do
  [ -n "$dir" ] && { mkdir -p "$R$dir" && mount -t 9p -o $opts,cache=none "rw$i" "$R$dir" || die "cannot mount $dir"; }
  i=$((i + 1))
done < $C/rw.list
while read -r dir; do
  case "$dir" in /tmp/*) mkdir -p "$R$dir" && mount --bind "/hosttmp\${dir#/tmp}" "$R$dir" || die "cannot bind $dir";; esac
done < $C/keep.list
ifconfig lo 127.0.0.1 up 2>/dev/null
# A kernel with its drivers built in (the debug kernel): modprobe finds them in modules.builtin.
if [ -f $C/modules.dir ]; then
  mount -t tmpfs -o mode=0755 tmpfs $R/lib/modules && mkdir -p $R/lib/modules/$(uname -r) &&
    mount --bind "$R$(cat $C/modules.dir)" $R/lib/modules/$(uname -r) || die "cannot mount the modules dir"
fi

if [ -f $C/module.path ]; then
  ko=$(cat $C/module.path)
  if [ -e /sys/class/misc/udmabuf ]; then dev=guest-udmabuf; else dev=udmabuf; fi
  insmod "$R$ko" devname=$dev $(cat $C/module.params) || die "cannot load $ko"
  export GUEST_DMABUF_DEVICE=/dev/$dev
fi

echo "${START_MARKER}"
chroot $R /bin/sh ${CONTROL_MOUNT}/command.sh
echo $? > $C/status
echo "${END_MARKER}"

${MODULE_HOLDERS}
if [ -f $C/module.path ]; then
  if rmmod guest_udmabuf 2> $C/rmmod.err; then echo ok > $C/rmmod.status
  else
    echo failed > $C/rmmod.status
    held=$(module_holders $dev)
    echo "\${held:-no process holds the device or one of its dma-bufs: the kernel still has a reference}" >> $C/rmmod.err
  fi
fi
# Debug kernel: lockdep and dma-debug still on, and dma-debug's error count (vm/debug-report.ts).
if [ -r /proc/lockdep_stats ]; then
  D=$R/sys/kernel/debug/dma-api
  { grep -h 'debug_locks:' /proc/lockdep_stats
    echo "dma-api disabled: $(cat $D/disabled 2>/dev/null || echo missing)"
    echo "dma-api errors: $(cat $D/error_count 2>/dev/null || echo missing)"; } > $C/debug-state
fi
# kmemleak (debug kernel): one scan after the unload; its reports join the kernel log.
K=$R/sys/kernel/debug/kmemleak
[ -w $K ] && echo scan > $K
dmesg > $C/dmesg
[ -r $K ] && cat $K >> $C/dmesg
sync
# Last: the host treats a run without this marker as one that died on the way here.
echo done > $C/finished
sync
reboot -f
`;
