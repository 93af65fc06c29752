#!/bin/sh
# /init of the rig's machine (test/rig/README.md), in two stages.
# Stage 1 runs under busybox in the initramfs that test/rig/image.ts builds: it loads the modules, puts the host's
# root (read-only) under a tmpfs overlay so every host path is there and writable without touching the host, binds
# the run's share at /run/rig, binds the emulated PCI devices it was asked for to vfio-pci, and switches root to the
# overlay (a real root, not a chroot: paths read through /proc are the ones the host has), running this script
# again from there. Stage 2 runs under the host's /bin/sh: it runs the host's command as root in the host's
# directory, writes its exit status to the share and powers off. Kernel and init messages go to ttyS0 (the console
# log); the command's output goes to the virtio serial port rig.out, which the host streams. In shell mode the
# command is an interactive shell on ttyS0.
export PATH=/sbin:/bin:/usr/sbin:/usr/bin

say() { echo "rig-init: $*"; }
# sysrq, not poweroff: stage 2 has no busybox, and the host's poweroff wants its init system.
power_off() { sync; echo o > /proc/sysrq-trigger; sleep 60; }
# Something the rig itself needs failed: say so and power off without a status (the host reports a dead machine).
die() { say "$*"; power_off; }

if [ "$1" = stage2 ]; then
  out=$2
  if [ -e /run/rig/shell ]; then
    sh -c '. /run/rig/env; cd "$RIG_CWD"; exec setsid -c sh -c "exec \${SHELL:-/bin/sh} -i"' < /dev/ttyS0 > /dev/ttyS0 2>&1
    status=$?
  else
    sh -c '. /run/rig/env; cd "$RIG_CWD" || { echo "rig: cannot enter $RIG_CWD" >&2; exit 1; }; exec /bin/sh /run/rig/command' \
      < /dev/null > "$out" 2>&1
    status=$?
  fi
  echo "$status" > /run/rig/status
  say "command ended with status $status"
  power_off
fi

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

while read -r ko; do
  insmod "/$ko" || say "insmod $ko failed"
done < /etc/rig-modules

mkdir -p /share /lower /rw /newroot
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 rigshare /share || die "cannot mount the run's share"
transport=$(cat /share/transport)
if [ "$transport" = virtiofs ]; then
  mount -t virtiofs -o ro hostroot /lower || die "cannot mount the host's root (virtiofs)"
else
  mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,ro,cache=loose hostroot /lower || die "cannot mount the host's root"
fi
mount -t tmpfs -o mode=0755 rig-rw /rw
mkdir -p /rw/upper /rw/work
mount -t overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work rig-root /newroot || die "cannot mount the overlay"

# /tmp stays the host's, seen through the overlay (a caller may work there); /run and /dev/shm start empty.
mount -t proc proc /newroot/proc
mount -t sysfs sysfs /newroot/sys
mount -t devtmpfs devtmpfs /newroot/dev
mkdir -p /newroot/dev/pts /newroot/dev/shm
mount -t devpts -o newinstance,ptmxmode=0666 devpts /newroot/dev/pts
mount -t tmpfs -o mode=1777 shm /newroot/dev/shm
mount -t tmpfs -o mode=0755 run /newroot/run
mkdir -p /newroot/run/rig
mount --bind /share /newroot/run/rig
# The image transport: a private copy of the host's current directory, mounted over it.
if [ "$transport" = image ]; then
  mount -t ext4 /dev/vda "/newroot$(cat /share/cwd)" || die "cannot mount the image of the current directory"
fi
ip link set lo up
# Huge pages for the RAM backend tests (the host may have none reserved): 64 x 2 MiB.
echo 64 > /proc/sys/vm/nr_hugepages
hostname tsvmm-rig

# Emulated PCI devices for passthrough: every function whose vendor:device is listed is handed to vfio-pci.
vfio_bound=""
for id in $(cat /share/vfio-ids 2>/dev/null); do
  for dev in /sys/bus/pci/devices/*; do
    [ "$(cat "$dev/vendor"):$(cat "$dev/device")" = "0x${id%%:*}:0x${id##*:}" ] || continue
    bdf=${dev##*/}
    [ -e "$dev/driver" ] && echo "$bdf" > "$dev/driver/unbind"
    echo vfio-pci > "$dev/driver_override"
    echo "$bdf" > /sys/bus/pci/drivers_probe
    if [ "$(basename "$(readlink "$dev/driver")")" = vfio-pci ]; then
      vfio_bound="$vfio_bound $bdf=$id"
    else
      say "$bdf ($id) did not bind to vfio-pci"
    fi
  done
done
echo "${vfio_bound# }" > /share/vfio-bound

if [ -c /dev/kvm ]; then kvm=present; else kvm=MISSING; fi
say "ready: kernel $(uname -r), $(nproc) CPUs, /dev/kvm $kvm${vfio_bound:+, vfio:$vfio_bound}"

# The port appears shortly after virtio_console binds: wait for it rather than lose the command's output.
out=""
for _ in 1 2 3 4 5 6 7 8 9 10; do
  for port in /sys/class/virtio-ports/*; do
    [ "$(cat "$port/name" 2>/dev/null)" = rig.out ] && out=/dev/${port##*/}
  done
  [ -n "$out" ] && [ -c "$out" ] && break
  out=""
  sleep 0.2
done

[ -e /share/shell ] || [ -n "$out" ] || die "no rig.out port: the command's output would be lost"
cp /init /newroot/run/rig-init
exec switch_root /newroot /bin/sh /run/rig-init stage2 "$out"
