// The guest side of bench/linux-io: Debian's generic kernel with a scripted /init (test/support/linux-guest.ts)
// that times `dd` on /dev/vda with direct I/O and pings the tap's host end, and prints each result as a
// `scenario:` line. The guest times dd itself, from CLOCK_MONOTONIC as /proc/timer_list shows it ("now at N
// nsecs", read by a shell builtin: no fork inside the timed window but dd's own), so the same clock in the same
// kernel times both VMMs; busybox dd prints no time of its own.
import { GUEST_IP, HOST_IP } from '../../examples/guests/virtio-probe-host.js';
import { SCENARIO_PREFIX, scenarioInit, shq } from '../../test/support/linux-guest.js';

/** The modules the I/O guest loads (dependencies are added by the builder). */
export const IO_MODULES = ['virtio_pci', 'virtio_blk', 'virtio_net'] as const;

export interface DdCase {
  /** "write 1M", "read 4k", … */
  name: string;
  bs: string;
  bytesPerBlock: number;
  count: number;
  op: 'read' | 'write';
}

export function ddCases(mib1M: number, blocks4k: number): DdCase[] {
  const cases: DdCase[] = [];
  for (const [bs, bytesPerBlock, count] of [
    ['1M', 1 << 20, mib1M],
    ['4k', 4096, blocks4k],
  ] as const) {
    for (const op of ['write', 'read'] as const) cases.push({ name: `${op} ${bs}`, bs, bytesPerBlock, count, op });
  }
  return cases;
}

const ddCommand = (c: DdCase): string =>
  c.op === 'write'
    ? `if=/dev/zero of=/dev/vda bs=${c.bs} count=${c.count} oflag=direct`
    : `if=/dev/vda of=/dev/null bs=${c.bs} count=${c.count} iflag=direct`;

/** The /init: `reps` rounds of every dd case, then `pings` back-to-back pings (after one unmeasured ARP + ping). */
export function ioInit(cases: readonly DdCase[], reps: number, pings: number) {
  const body = [
    // T = CLOCK_MONOTONIC ns, from the third line of /proc/timer_list ("now at N nsecs"), with builtins only.
    'now() { { read -r _; read -r _; read -r _ _ T _; } < /proc/timer_list; }',
    'run_dd() { name=$1; shift; now; t0=$T; dd "$@" 2>/tmp/dd.err || fail "dd $name: $(cat /tmp/dd.err)"; now; say "dd $name ns=$((T - t0))"; }',
    'wait_for /dev/vda || fail "no /dev/vda"',
    'ip link set lo up',
    `ip addr add ${GUEST_IP}/24 dev eth0 && ip link set eth0 up || fail "eth0"`,
    'i=0',
    `while [ $i -lt ${reps} ]; do`,
    ...cases.map((c) => `  run_dd ${shq(c.name)} ${ddCommand(c)}`),
    '  i=$((i + 1))',
    'done',
    `ping -c 2 -W 10 ${HOST_IP} >/dev/null || fail "no answer from ${HOST_IP}"`,
    `ping -c ${pings} -A ${HOST_IP} >/tmp/ping.out 2>&1 || fail "ping: $(cat /tmp/ping.out)"`,
    'while read -r l; do say "ping $l"; done </tmp/ping.out',
    'say "io done"',
    'poweroff -f',
    'sleep 10',
  ];
  return (modulePaths: readonly string[]) => scenarioInit(body, modulePaths);
}

export interface IoResult {
  /** Case name → seconds of each dd run, in order. */
  dd: Map<string, number[]>;
  /** Every measured ping's round trip, ms. */
  pingMs: number[];
}

/** Reads the guest's scenario lines; throws on a FAILED line or a missing end. */
export function parseIo(serial: string): IoResult {
  const lines = serial
    .replace(/\r/g, '')
    .split('\n')
    .filter((l) => l.startsWith(`${SCENARIO_PREFIX} `))
    .map((l) => l.slice(SCENARIO_PREFIX.length + 1));
  const failed = lines.find((l) => l.startsWith('FAILED'));
  if (failed) throw new Error(`the guest says: ${failed}`);
  if (!lines.includes('io done')) throw new Error('the guest did not get to "io done"');
  const dd = new Map<string, number[]>();
  const pingMs: number[] = [];
  for (const l of lines) {
    const d = /^dd (.+) ns=(\d+)$/.exec(l);
    if (d) {
      const list = dd.get(d[1]) ?? [];
      list.push(Number(d[2]) / 1e9);
      dd.set(d[1], list);
    }
    const p = /^ping .* time=([\d.]+) ms/.exec(l);
    if (p) pingMs.push(Number(p[1]));
  }
  return { dd, pingMs };
}
