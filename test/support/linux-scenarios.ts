// The Linux scenarios: what Debian's generic kernel, booted with the initramfs of test/support/linux-guest.ts, does
// with every device, written once as /init scripts so tsvmm and QEMU (the reference) run the very same guest.
//
//   devices: SMP and kvmclock, virtio-console (hvc0 carries the output and echoes a line typed on the host),
//            virtio-blk (64 MiB written with conv=fsync, read back, discarded), virtio-net (ping, 16 MiB each way
//            with nc), virtio-rng (/dev/hwrng), the kernel log's warnings; then it ends as the command line says:
//            `scenario.end=poweroff|reboot|powerbutton` (wait for QMP system_powerdown's power button, then power off).
//   acpi:    the first boot suspends to RAM (S3; the host wakes it with QMP system_wakeup), checks its clock, leaves a
//            marker on the disk and reboots; the boot that finds the marker panics with sysrq c (pvpanic).
//
// Every line a scenario prints starts with `scenario:` (linux-guest.ts SCENARIO_PREFIX); scenarioLines() picks them
// out of a serial log and comparableLines() removes what may differ between runs (checksums of random data, times).
import { createHash } from 'node:crypto';
import { KERNEL_WARNING_ERE, SCENARIO_PREFIX } from './linux-guest.js';
import { GUEST_IP, HOST_IP } from '../../examples/guests/virtio-probe-host.js';

export { GUEST_IP, HOST_IP };

const MiB = 1 << 20;
/** virtio-blk: the pattern's size, then a range the guest fills and discards; the disk holds both. */
export const BLK_PATTERN_BYTES = 64 * MiB;
export const BLK_DISCARD_BYTES = 16 * MiB;
export const BLK_DISK_BYTES = BLK_PATTERN_BYTES + BLK_DISCARD_BYTES;
/** What the guest's queue/discard_max_bytes shows: QEMU's limit, 2^22 - 1 sectors per discard (devices/virtio/blk.ts). */
export const DISCARD_MAX_BYTES = ((1 << 22) - 1) * 512;
/** virtio-net: bytes moved each way with busybox nc, and the host peer's ports (test/support/linux-net-peer.ts). */
export const NET_BYTES = 16 * MiB;
export const NET_UPLOAD_PORT = 7001;
export const NET_DOWNLOAD_PORT = 7002;
/** virtio-console: the line the host types on hvc0 once the guest asks for it, and the guest's prompt. */
export const HVC_INPUT = 'a line typed on the host';
export const HVC_PROMPT = `${SCENARIO_PREFIX} hvc0: type a line`;
/** The line after which the guest waits for the power button (the host then sends system_powerdown). */
export const POWER_BUTTON_WAIT = `${SCENARIO_PREFIX} waiting for the power button`;
/** The acpi scenario's marker: written to sector 0 before `reboot -f`, found by the second boot. */
export const REBOOT_MARKER = 'tsvmm-scenario-rebooted';

export type ScenarioEnd = 'poweroff' | 'reboot' | 'powerbutton';

/**
 * Shell helpers for both scenarios: `say` also writes to hvc0 once it is open (fd 3), `arg NAME` reads
 * `scenario.NAME=` from the kernel command line, `cpu_and_clock` reports what SMP and kvmclock must show.
 */
const common = [
  `say() { echo "${SCENARIO_PREFIX} $*"; if [ -n "$HVC" ]; then echo "${SCENARIO_PREFIX} $*" >&3; fi; }`,
  'arg() { for w in $(cat /proc/cmdline); do case "$w" in scenario.$1=*) echo "${w#*=}";; esac; done; }',
  'md5() { md5sum | cut -d" " -f1; }',
  'cpu_and_clock() {',
  '  say "cpus online: $(cat /sys/devices/system/cpu/online) (nproc $(nproc))"',
  '  say "clocksource: $(cat /sys/devices/system/clocksource/clocksource0/current_clocksource)"',
  '}',
  '# The kernel log is read with dmesg: the console shows only errors (linux-guest.ts quiets it).',
  'kernel_warnings() {',
  `  dmesg | grep -E '${KERNEL_WARNING_ERE}' > /tmp/warnings`,
  '  say "kernel log: $(wc -l < /tmp/warnings) warning lines"',
  '  while read -r l; do say "kernel log: $l"; done < /tmp/warnings',
  '}',
];

/** How a scenario ends: as `scenario.end=` says (power off, reboot, or wait for the power button and power off). */
const ending = [
  'case "$(arg end)" in',
  '  reboot) say "reboot -f"; reboot -f;;',
  '  powerbutton)',
  '    # The fixed-feature power button counts its events here (the button driver handles them; nothing else).',
  '    say "waiting for the power button"',
  '    i=0; while [ "$(cut -c1-10 /sys/firmware/acpi/interrupts/ff_pwr_btn | tr -d " ")" = 0 ] && [ $i -lt 1200 ]; do',
  '      sleep 0.1; i=$((i+1))',
  '    done',
  '    say "power button events: $(cut -c1-10 /sys/firmware/acpi/interrupts/ff_pwr_btn | tr -d " ")"',
  '    say "poweroff -f"; poweroff -f;;',
  '  *) say "poweroff -f"; poweroff -f;;',
  'esac',
  'sleep 30',
  'fail "still running after the end"',
];

/** The devices scenario's /init body (run after scenarioInit's mounts and module loads). */
export function devicesScenario(): string[] {
  const pattern = BLK_PATTERN_BYTES / MiB;
  const discard = BLK_DISCARD_BYTES / MiB;
  return [
    ...common,
    'say "devices scenario, pid $$"',
    'cpu_and_clock',
    '',
    '# virtio-console first, so the rest of the output goes to hvc0 as well. No echo from the tty: the guest echoes.',
    'wait_for /dev/hvc0 || fail "no /dev/hvc0"',
    'exec 3<>/dev/hvc0 || fail "open /dev/hvc0"',
    'stty -F /dev/hvc0 -echo || fail "stty -echo on hvc0"',
    'HVC=1',
    'say "hvc0: open"',
    'say "hvc0: type a line"',
    'read -r line <&3 || fail "read from hvc0"',
    'say "hvc0 echo: $line"',
    '',
    '# virtio-blk: a random pattern written with fsync, read back past the page cache, then a range discarded.',
    'wait_for /dev/vda || fail "no /dev/vda"',
    'say "blk: /dev/vda has $(cat /sys/block/vda/size) sectors"',
    `head -c ${BLK_PATTERN_BYTES} /dev/urandom > /tmp/pattern || fail "make the pattern"`,
    'w=$(md5 < /tmp/pattern)',
    'dd if=/tmp/pattern of=/dev/vda bs=1M conv=fsync 2>/dev/null || fail "dd to /dev/vda"',
    'rm /tmp/pattern',
    'echo 3 > /proc/sys/vm/drop_caches',
    `r=$(dd if=/dev/vda bs=1M count=${pattern} 2>/dev/null | md5)`,
    `say "blk: wrote ${pattern} MiB with conv=fsync, md5 $w"`,
    `say "blk: read back ${pattern} MiB, md5 $r"`,
    '[ "$w" = "$r" ] || fail "blk: read back differs"',
    'say "blk: discard_max_bytes $(cat /sys/block/vda/queue/discard_max_bytes)"',
    `dd if=/dev/urandom of=/dev/vda bs=1M seek=${pattern} count=${discard} iflag=fullblock conv=fsync 2>/dev/null ||`,
    '  fail "fill the range to discard"',
    `if blkdiscard -o ${BLK_PATTERN_BYTES} -l ${BLK_DISCARD_BYTES} /dev/vda; then say "blk: blkdiscard ok"; else say "blk: blkdiscard failed"; fi`,
    'echo 3 > /proc/sys/vm/drop_caches',
    `z=$(head -c ${BLK_DISCARD_BYTES} /dev/zero | md5)`,
    `d=$(dd if=/dev/vda bs=1M skip=${pattern} count=${discard} 2>/dev/null | md5)`,
    '# Not promised by virtio (a discard may do nothing), but both VMMs punch a hole in the image file.',
    'if [ "$d" = "$z" ]; then say "blk: the discarded range reads as zeroes"; else say "blk: the discarded range reads md5 $d"; fi',
    '',
    '# virtio-net: a static address, ping the tap, then 16 MiB each way with nc (the host peer checks its side).',
    'wait_for /sys/class/net/eth0 || fail "no eth0"',
    'ip link set lo up',
    'ip link set eth0 up || fail "ip link set eth0 up"',
    `ip addr add ${GUEST_IP}/24 dev eth0 || fail "ip addr add"`,
    'say "net: eth0 mac $(cat /sys/class/net/eth0/address)"',
    `if ping -c 3 -i 0.2 -W 5 ${HOST_IP} > /tmp/ping 2>&1; then`,
    `  say "net: ping ${HOST_IP}: $(grep -o '[0-9]* packets transmitted, [0-9]* packets received' /tmp/ping)"`,
    `else cat /tmp/ping; fail "ping ${HOST_IP}"; fi`,
    `head -c ${NET_BYTES} /dev/urandom > /tmp/up`,
    'say "net: sending $(wc -c < /tmp/up) bytes, md5 $(md5 < /tmp/up)"',
    `nc ${HOST_IP} ${NET_UPLOAD_PORT} < /tmp/up > /tmp/up-reply || fail "nc upload"`,
    'say "net: the host got $(cat /tmp/up-reply)"',
    `nc ${HOST_IP} ${NET_DOWNLOAD_PORT} < /dev/null > /tmp/down || fail "nc download"`,
    'say "net: received $(wc -c < /tmp/down) bytes, md5 $(md5 < /tmp/down)"',
    'rm -f /tmp/up /tmp/down',
    '',
    '# virtio-rng: the hw_random core picks the virtio device, /dev/hwrng reads.',
    'wait_for /dev/hwrng || fail "no /dev/hwrng"',
    'i=0; while [ "$(cat /sys/class/misc/hw_random/rng_current)" = none ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done',
    'say "rng: current $(cat /sys/class/misc/hw_random/rng_current)"',
    'say "rng: read $(head -c 4096 /dev/hwrng | wc -c) bytes from /dev/hwrng"',
    '',
    'cpu_and_clock',
    'kernel_warnings',
    ...ending,
  ];
}

/** The acpi scenario's /init body: S3 and a reboot on the first boot, a panic on the boot that finds the marker. */
export function acpiScenario(): string[] {
  return [
    ...common,
    'wait_for /dev/vda || fail "no /dev/vda"',
    `if [ "$(head -c ${REBOOT_MARKER.length} /dev/vda)" = "${REBOOT_MARKER}" ]; then`,
    '  say "acpi scenario, second boot: the marker is on the disk"',
    '  cpu_and_clock',
    '  kernel_warnings',
    '  say "panic: echo c > /proc/sysrq-trigger"',
    '  echo c > /proc/sysrq-trigger',
    '  sleep 30; fail "still running after the panic"',
    'fi',
    'say "acpi scenario, first boot"',
    'cpu_and_clock',
    'say "s3: mem_sleep $(cat /sys/power/mem_sleep), state $(cat /sys/power/state)"',
    'u0=$(cut -d. -f1 /proc/uptime); t0=$(date +%s)',
    'say "s3: suspending"',
    'echo mem > /sys/power/state || fail "echo mem > /sys/power/state"',
    'u1=$(cut -d. -f1 /proc/uptime); t1=$(date +%s)',
    '# The wall clock and the boot-time clock (uptime counts suspended time) moved forward across the sleep.',
    'say "s3: resumed; the wall clock moved $((t1 - t0)) s, uptime $((u1 - u0)) s"',
    '[ $((t1 - t0)) -ge 0 ] && [ $((t1 - t0)) -lt 600 ] || fail "s3: the wall clock moved $((t1 - t0)) s"',
    'cpu_and_clock',
    `echo ${REBOOT_MARKER} | dd of=/dev/vda conv=fsync,notrunc 2>/dev/null || fail "write the marker"`,
    'say "marker written"',
    'kernel_warnings',
    'say "reboot -f"',
    'reboot -f',
    'sleep 30; fail "still running after reboot -f"',
  ];
}

/** The `scenario:` lines of a serial log (carriage returns removed), in order. */
export function scenarioLines(log: string): string[] {
  return log
    .replace(/\r/g, '')
    .split('\n')
    .filter((l) => l.startsWith(SCENARIO_PREFIX))
    .map((l) => l.trimEnd());
}

/**
 * A scenario line with what differs from run to run replaced: md5s of random data (`<md5>`) — the tests check them
 * against the other side instead — and the seconds S3 took (`<n>`), which depend on when the host woke the guest.
 */
export function comparableLine(line: string): string {
  let l = line.replace(/\b[0-9a-f]{32}\b/g, '<md5>');
  if (l.includes('s3: resumed;')) l = l.replace(/-?\d+ s\b/g, '<n> s');
  return l;
}

export interface IntendedDifference {
  /** Why tsvmm and QEMU print different lines here (named in the test). */
  why: string;
  tsvmm: RegExp;
  qemu: RegExp;
}

/**
 * Line-by-line differences between tsvmm's and QEMU's scenario lines (after comparableLine), except those an
 * intended difference explains; empty means the outputs agree.
 */
export function scenarioDifferences(
  tsvmm: readonly string[],
  qemu: readonly string[],
  intended: readonly IntendedDifference[] = [],
): string[] {
  const a = tsvmm.map(comparableLine);
  const b = qemu.map(comparableLine);
  const out: string[] = [];
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    if (a[i] === b[i]) continue;
    const t = a[i] ?? '(no line)';
    const q = b[i] ?? '(no line)';
    if (intended.some((d) => d.tsvmm.test(t) && d.qemu.test(q))) continue;
    out.push(`line ${i + 1}: tsvmm '${t}' vs QEMU '${q}'`);
  }
  return out;
}

/** The md5 of `data`, as the guest's md5sum prints it. */
export const md5Hex = (data: Uint8Array): string => createHash('md5').update(data).digest('hex');

/** What `/sys/devices/system/cpu/online` and nproc say with `cpus` vCPUs, as cpu_and_clock prints it. */
const cpusLine = (cpus: number) =>
  `${SCENARIO_PREFIX} cpus online: ${cpus === 1 ? '0' : `0-${cpus - 1}`} (nproc ${cpus})`;
const clockLine = `${SCENARIO_PREFIX} clocksource: kvm-clock`;

/** The devices scenario's lines (after comparableLine) when every device does its part. */
export function expectedDevicesLines(o: { cpus: number; end: ScenarioEnd }): string[] {
  const s = (l: string) => `${SCENARIO_PREFIX} ${l}`;
  const pattern = BLK_PATTERN_BYTES / MiB;
  return [
    s('devices scenario, pid 1'),
    cpusLine(o.cpus),
    clockLine,
    s('hvc0: open'),
    s('hvc0: type a line'),
    s(`hvc0 echo: ${HVC_INPUT}`),
    s(`blk: /dev/vda has ${BLK_DISK_BYTES / 512} sectors`),
    s(`blk: wrote ${pattern} MiB with conv=fsync, md5 <md5>`),
    s(`blk: read back ${pattern} MiB, md5 <md5>`),
    s(`blk: discard_max_bytes ${DISCARD_MAX_BYTES}`),
    s('blk: blkdiscard ok'),
    s('blk: the discarded range reads as zeroes'),
    s('net: eth0 mac 52:54:00:12:34:56'),
    s(`net: ping ${HOST_IP}: 3 packets transmitted, 3 packets received`),
    s(`net: sending ${NET_BYTES} bytes, md5 <md5>`),
    s(`net: the host got ${NET_BYTES} bytes, md5 <md5>`),
    s(`net: received ${NET_BYTES} bytes, md5 <md5>`),
    s('rng: current virtio_rng.0'),
    s('rng: read 4096 bytes from /dev/hwrng'),
    cpusLine(o.cpus),
    clockLine,
    s('kernel log: 0 warning lines'),
    ...(o.end === 'reboot'
      ? [s('reboot -f')]
      : o.end === 'powerbutton'
        ? [s('waiting for the power button'), s('power button events: 1'), s('poweroff -f')]
        : [s('poweroff -f')]),
  ];
}

/** The acpi scenario's lines (after comparableLine): S3, the marker and reboot, then the panic on the second boot. */
export function expectedAcpiLines(o: { cpus: number }): string[] {
  const s = (l: string) => `${SCENARIO_PREFIX} ${l}`;
  return [
    s('acpi scenario, first boot'),
    cpusLine(o.cpus),
    clockLine,
    s('s3: mem_sleep s2idle [deep], state freeze mem disk'),
    s('s3: suspending'),
    s('s3: resumed; the wall clock moved <n> s, uptime <n> s'),
    cpusLine(o.cpus),
    clockLine,
    s('marker written'),
    s('kernel log: 0 warning lines'),
    s('reboot -f'),
    s('acpi scenario, second boot: the marker is on the disk'),
    cpusLine(o.cpus),
    clockLine,
    s('kernel log: 0 warning lines'),
    s('panic: echo c > /proc/sysrq-trigger'),
  ];
}
