// `npm run bench`: every benchmark in sequence, each in its own process (so one bench's JIT, heap and koffi state
// cannot colour the next one's numbers). Each prints its tables and writes build/bench/<name>.json.
//   node dist/bench/run.js [name…]      names: exits, startup, cpr-pause, cpr-parts, blk, boot (default: all)
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const BENCHES = ['exits', 'startup', 'cpr-pause', 'cpr-parts', 'blk', 'boot'] as const;

const wanted = process.argv.slice(2);
for (const name of wanted) {
  if (!(BENCHES as readonly string[]).includes(name)) {
    process.stderr.write(`bench: unknown benchmark '${name}' (known: ${BENCHES.join(', ')})\n`);
    process.exit(2);
  }
}

let failed = 0;
for (const name of wanted.length ? wanted : BENCHES) {
  process.stdout.write(`\n=== bench/${name} ===\n`);
  const script = fileURLToPath(new URL(`./${name}.js`, import.meta.url));
  const r = spawnSync(process.execPath, [script], { stdio: 'inherit' });
  if (r.status !== 0) {
    failed++;
    process.stderr.write(`bench/${name} failed (${r.status ?? r.signal})\n`);
  }
}
process.exit(failed ? 1 : 0);
