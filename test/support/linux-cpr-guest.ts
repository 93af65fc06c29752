// The Linux guest of the checkpoint/restart scenarios (src/machine/linux-cpr.test.ts): Debian's generic kernel with
// a scripted /init (test/support/linux-guest.ts) that runs three things at once until the host says stop —
//   - a counter: `count N UPTIME BLOCKS` on hvc0 every 10 ms (UPTIME: /proc/uptime, the guest's clock; BLOCKS: how
//     many blocks the writer has on the disk, synced);
//   - a writer: 4 KiB blocks appended to /dev/vda, each `BLK<index> <md5 of the rest>\n` + random bytes, written
//     with fsync (the block is on the host's image when dd returns), a short rest between blocks;
//   - a ping to the host end of the tap every 100 ms (when the host asks for it), its lines on ttyS0;
//   - with `readBack` (the passed-through NVMe of src/machine/linux-vfio-nvme-cpr.test.ts, with `disk` and no
//     network): a reader re-reading random synced blocks past the page cache and checking them, the writer writing
//     with O_DIRECT, and at the end every block read back and checked by the guest;
// and reads commands from hvc0: `suspend` (ACPI S3: `echo mem > /sys/power/state`, what QEMU's guest agent does
// for guest-suspend-ram), `ping` (start pinging), `finish` (stop the writer, report its blocks and the kernel log's
// warnings from dmesg, power off).
// Scenario lines go to ttyS0 with the `scenario:` prefix.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { GUEST_IP, HOST_IP } from '../../examples/guests/virtio-probe-host.js';
import { KERNEL_WARNING_ERE, SCENARIO_PREFIX } from './linux-guest.js';

export { GUEST_IP, HOST_IP };

export const BLOCK_BYTES = 4096;
/** A block's header: "BLK" + 12 digits + " " + 32 hex digits + "\n". */
const HEADER_BYTES = 49;
/** The counter's period. */
export const COUNTER_PERIOD_MS = 10;
/** The writer's rest between blocks: enough blocks for the test, few enough not to crowd out the counter. */
const WRITER_REST_US = 50_000;
/** The ping's interval. */
export const PING_INTERVAL_S = 0.1;

export interface LinuxCprGuestOptions {
  diskBlocks: number;
  /** The block device the writer appends to (default /dev/vda: virtio-blk). */
  disk?: string;
  /** Bring up eth0 for the ping (default true: virtio-net over a tap). */
  net?: boolean;
  /**
   * Also re-read a random synced block with O_DIRECT in a loop and check it (the device's DMA in both directions
   * all the time), and at `finish` read every block back past the page cache; the writer writes with O_DIRECT too.
   */
  readBack?: boolean;
}

/** The body of /init (after the modules are loaded): see the file's comment. */
export function linuxCprBody(o: LinuxCprGuestOptions): string[] {
  const disk = o.disk ?? '/dev/vda';
  const net = o.net ?? true;
  const direct = o.readBack ? ' oflag=direct' : '';
  return [
    'wait_for /dev/hvc0 || fail "no /dev/hvc0"',
    `wait_for ${disk} || fail "no ${disk}"`,
    ...(net ? ['wait_for /sys/class/net/eth0 || fail "no eth0"'] : []),
    '# hvc0 carries bytes both ways: no echo of the commands, no CR before LF. Held open on fd 3 throughout: the hvc',
    '# driver resets its termios when the last opener closes.',
    'exec 3<>/dev/hvc0 || fail "open hvc0"',
    'stty raw -echo <&3 || fail "stty hvc0"',
    ...(net
      ? [
          'ip link set lo up',
          'ip link set eth0 up || fail "ip link set eth0 up"',
          `ip addr add ${GUEST_IP}/24 dev eth0 || fail "ip addr add"`,
        ]
      : []),
    'echo 0 > /tmp/blocks',
    '# The writer: block i at i*4096, header with the md5 of its random payload; BLOCKS counts the synced ones.',
    'writer() {',
    '  i=0',
    `  while [ ! -e /tmp/stop ] && [ $i -lt ${o.diskBlocks} ]; do`,
    `    head -c ${BLOCK_BYTES - HEADER_BYTES} /dev/urandom > /tmp/payload`,
    '    s=$(md5sum < /tmp/payload)',
    '    { printf \'BLK%012d %s\\n\' $i "${s%% *}"; cat /tmp/payload; } > /tmp/block',
    `    dd if=/tmp/block of=${disk} bs=${BLOCK_BYTES} seek=$i count=1 conv=notrunc,fsync${direct} 2>/dev/null || fail "write block $i"`,
    '    i=$((i+1))',
    '    echo $i > /tmp/blocks.new && mv /tmp/blocks.new /tmp/blocks',
    `    usleep ${WRITER_REST_US}`,
    '  done',
    '}',
    ...(o.readBack ? readBackFunctions(disk) : []),
    '# The counter: shell built-ins but usleep, so one line costs one fork.',
    'counter() {',
    '  n=0',
    '  while :; do',
    '    n=$((n+1))',
    '    read up idle < /proc/uptime',
    '    read b < /tmp/blocks',
    '    echo "count $n $up $b"',
    `    usleep ${COUNTER_PERIOD_MS * 1000}`,
    '  done >&3',
    '}',
    'writer & wpid=$!',
    ...(o.readBack ? ['reader & rpid=$!'] : []),
    'counter & cpid=$!',
    'say "running: writer $wpid counter $cpid"',
    'ppid=',
    'while read cmd; do',
    '  case "$cmd" in',
    '    suspend)',
    '      say "suspending"',
    '      if echo mem > /sys/power/state; then say "resumed"; else say "FAILED suspend"; fi;;',
    '    ping)',
    `      ping -i ${PING_INTERVAL_S} ${HOST_IP} & ppid=$!`,
    '      say "pinging";;',
    '    finish)',
    '      break;;',
    '    *) say "unknown command $cmd";;',
    '  esac',
    'done <&3',
    'touch /tmp/stop',
    'wait $wpid',
    ...(o.readBack ? ['wait $rpid', 'say "reads $(cat /tmp/reads)"', `read_all ${disk}`] : []),
    '[ -n "$ppid" ] && kill -INT $ppid && wait $ppid',
    'kill $cpid',
    'sync',
    'say "blocks $(cat /tmp/blocks)"',
    ...(o.readBack ? [`dmesg | grep -iE '${IO_TROUBLE}' | while read l; do say "io trouble: $l"; done`] : []),
    "# The whole run's kernel warnings, from dmesg: the console shows only errors (linux-guest.ts quiets it).",
    `dmesg | grep -E '${KERNEL_WARNING_ERE}' > /tmp/warnings`,
    'say "kernel log: $(wc -l < /tmp/warnings) warning lines"',
    'while read -r l; do say "kernel log: $l"; done < /tmp/warnings',
    '# What a stalled CPU was doing (the soft lockup and RCU stall reports carry its registers and stack): for the',
    '# failure message of the test.',
    'dmesg | grep -A 40 -E \'soft lockup|detected stalls\' | while read -r l; do say "kernel trace: $l"; done',
    'say "powering off"',
    'poweroff -f',
  ];
}

/** Kernel lines of a block device in trouble (nvme's time-outs, resets and aborts; the block layer's I/O errors). */
const IO_TROUBLE = 'nvme.*(timeout|reset|abort|error)|I/O error|blk_update_request';

/**
 * `check_block DEV I`: block I read past the page cache, its header's index and checksum verified (fails the
 * scenario otherwise); the reader loop doing it to random synced blocks until the writer stops, counting its reads;
 * and `read_all DEV`: every synced block read back past the page cache in one go, saying "read back N blocks, md5
 * M" for the host to compare with its own file (one block at a time here costs ~6 forks each: minutes under TCG).
 */
function readBackFunctions(disk: string): string[] {
  return [
    'check_block() {',
    `  dd if=$1 of=/tmp/rblock bs=${BLOCK_BYTES} skip=$2 count=1 iflag=direct 2>/dev/null || fail "read block $2"`,
    `  h=$(head -c ${HEADER_BYTES - 1} /tmp/rblock)`,
    `  s=$(tail -c ${BLOCK_BYTES - HEADER_BYTES} /tmp/rblock | md5sum)`,
    '  [ "$h" = "$(printf \'BLK%012d %s\' $2 "${s%% *}")" ] || fail "block $2 read back as: $h"',
    '}',
    'echo 0 > /tmp/reads',
    'reader() {',
    '  r=0',
    '  while [ ! -e /tmp/stop ]; do',
    '    read b < /tmp/blocks',
    `    if [ $b -gt 0 ]; then check_block ${disk} $((RANDOM % b)); r=$((r+1)); echo $r > /tmp/reads; fi`,
    `    usleep ${WRITER_REST_US}`,
    '  done',
    '}',
    'read_all() {',
    '  read b < /tmp/blocks',
    `  s=$(dd if=$1 bs=${BLOCK_BYTES} count=$b iflag=direct 2>/dev/null | md5sum) || fail "read back"`,
    '  say "read back $b blocks, md5 ${s%% *}"',
    '}',
  ];
}

/** One counter line as the host received it. */
export interface CountLine {
  n: number;
  /** The guest's /proc/uptime, seconds. */
  uptime: number;
  /** Blocks the writer had synced when the line was printed. */
  blocks: number;
  /** When the host read the line's newline: CLOCK_REALTIME, µs (the clock of x-query-cpr-timings' marks). */
  hostUs: number;
}

/** Parses the counter's whole lines out of hvc0's text (other text, e.g. a torn line, is not a count). */
export const COUNT_LINE = /^count (\d+) (\d+\.\d+) (\d+)$/;

/** Now on CLOCK_REALTIME in µs, the clock tsvmm's cpr timing marks use. */
export const realtimeUs = (): number => Math.round((performance.timeOrigin + performance.now()) * 1000);

/** Whether `blocks` blocks at the start of the image are all intact; the first problem otherwise. */
export function blocksMismatch(image: Uint8Array, blocks: number): string | null {
  for (let i = 0; i < blocks; i++) {
    const b = Buffer.from(image.buffer, image.byteOffset + i * BLOCK_BYTES, BLOCK_BYTES);
    if (b.length < BLOCK_BYTES) return `block ${i} is past the end of the image`;
    const nl = b.indexOf(0x0a);
    const m = /^BLK(\d{12}) ([0-9a-f]{32})$/.exec(b.subarray(0, nl < 0 ? 64 : nl).toString('latin1'));
    if (!m) return `block ${i}: no header (starts ${JSON.stringify(b.subarray(0, 24).toString('latin1'))})`;
    if (Number(m[1]) !== i) return `block ${i} holds the header of block ${Number(m[1])}`;
    const sum = createHash('md5')
      .update(b.subarray(nl + 1))
      .digest('hex');
    if (sum !== m[2]) return `block ${i}: checksum ${sum}, header says ${m[2]}`;
  }
  return null;
}

/** Intact blocks in the image file at `path`, up to `blocks`. */
export const imageBlocksMismatch = (path: string, blocks: number): string | null =>
  blocksMismatch(readFileSync(path), blocks);

/** Scenario lines (`scenario: …`) on ttyS0, without the prefix. */
export const scenarioLines = (serial: string): string[] =>
  serial
    .replace(/\r/g, '')
    .split('\n')
    .filter((l) => l.startsWith(`${SCENARIO_PREFIX} `))
    .map((l) => l.slice(SCENARIO_PREFIX.length + 1));

/** The ping's replies on ttyS0: their sequence numbers. */
export const pingReplies = (serial: string): number[] =>
  [...serial.matchAll(/^\d+ bytes from [\d.]+: seq=(\d+) /gm)].map((m) => Number(m[1]));
