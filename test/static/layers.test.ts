// The layer rule (layers.json, turned into dependency-cruiser rules by .dependency-cruiser.cjs): imports point down
// the layer list only, there are no cycles, and production code never reaches into tests.
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { repoRoot } from '../support/cc.js';

interface Layer {
  name: string;
  folders: string[];
  what: string;
}
interface Violation {
  from: string;
  to: string;
  rule: { name: string };
  cycle?: { name: string }[];
}

const { layers } = JSON.parse(readFileSync(join(repoRoot, 'layers.json'), 'utf8')) as { layers: Layer[] };
const PRODUCTION_ROOTS = ['src', 'kvm', 'vfio', 'devices', 'cpr', 'examples'];
const depcruise = join(repoRoot, 'node_modules', '.bin', 'depcruise');

function cruise(cwd: string, roots: string[]): Violation[] {
  const r = spawnSync(depcruise, ['-c', '.dependency-cruiser.cjs', '--output-type', 'json', ...roots], {
    cwd,
    encoding: 'utf8',
    maxBuffer: 256 << 20,
  });
  if (r.error) throw r.error;
  if (!r.stdout.trim()) throw new Error(`depcruise printed nothing (status ${r.status}): ${r.stderr}`);
  return JSON.parse(r.stdout).summary.violations as Violation[];
}

const describe = (v: Violation): string =>
  `${v.rule.name}: ${v.from} → ${v.cycle ? v.cycle.map((c) => c.name).join(' → ') : v.to}`;

function productionFiles(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(join(repoRoot, dir), { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) {
      if (entry.name !== 'testing') out.push(...productionFiles(path));
    } else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.test.ts')) out.push(path);
  }
  return out;
}

test('no production module imports from a later layer, none is in a cycle, none imports test code', () => {
  const roots = PRODUCTION_ROOTS.filter((root) => readdirSync(repoRoot).includes(root));
  const violations = cruise(repoRoot, roots);
  assert.equal(violations.map(describe), []);
});

test('every production module sits directly in a folder the layer list names', () => {
  const placed = new Set(layers.flatMap((layer) => layer.folders));
  const roots = PRODUCTION_ROOTS.filter((root) => readdirSync(repoRoot).includes(root));
  const unplaced = roots.flatMap(productionFiles).filter((file) => !placed.has(dirname(file)));
  assert.equal(unplaced, []);
});

test('the rule catches an upward import: a sys module that imports the CLI fails', () => {
  const scratch = mkdtempSync(join(tmpdir(), 'tsvmm-layers-'));
  try {
    for (const file of ['layers.json', '.dependency-cruiser.cjs', 'tsconfig.json']) {
      cpSync(join(repoRoot, file), join(scratch, file));
    }
    mkdirSync(join(scratch, 'src', 'sys'), { recursive: true });
    mkdirSync(join(scratch, 'src', 'cli'), { recursive: true });
    writeFileSync(join(scratch, 'src', 'cli', 'main.ts'), 'export const flags = 1;\n');
    writeFileSync(
      join(scratch, 'src', 'sys', 'libc.ts'),
      "import { flags } from '../cli/main.js';\nexport { flags };\n",
    );
    const violations = cruise(scratch, ['src']);
    assert.equal(violations.map(describe), ['layer-sys: src/sys/libc.ts → src/cli/main.ts']);
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
});

test('the rule catches a cycle inside one layer', () => {
  const scratch = mkdtempSync(join(tmpdir(), 'tsvmm-layers-'));
  try {
    for (const file of ['layers.json', '.dependency-cruiser.cjs', 'tsconfig.json']) {
      cpSync(join(repoRoot, file), join(scratch, file));
    }
    mkdirSync(join(scratch, 'kvm'), { recursive: true });
    writeFileSync(join(scratch, 'kvm', 'vm.ts'), "import { b } from './vcpu.js';\nexport const a = () => b;\n");
    writeFileSync(join(scratch, 'kvm', 'vcpu.ts'), "import { a } from './vm.js';\nexport const b = () => a;\n");
    const violations = cruise(scratch, ['kvm']);
    assert.ok(
      violations.length > 0 && violations.every((v) => v.rule.name === 'no-circular'),
      violations.map(describe).join('; '),
    );
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
});

test('the rule catches a second koffi loader and a production import of a devDependency', () => {
  const scratch = mkdtempSync(join(tmpdir(), 'tsvmm-layers-'));
  try {
    for (const file of ['layers.json', '.dependency-cruiser.cjs', 'tsconfig.json', 'package.json']) {
      cpSync(join(repoRoot, file), join(scratch, file));
    }
    symlinkSync(join(repoRoot, 'node_modules'), join(scratch, 'node_modules'));
    mkdirSync(join(scratch, 'src', 'sys'), { recursive: true });
    // libc.ts's own way of loading koffi (a require made by createRequire), in the allowed module and in another.
    const loader = [
      "import { createRequire } from 'node:module';",
      'const require = createRequire(import.meta.url);',
      "export const koffi = require('koffi');",
      '',
    ].join('\n');
    writeFileSync(join(scratch, 'src', 'sys', 'libc.ts'), loader);
    writeFileSync(join(scratch, 'src', 'sys', 'epoll.ts'), loader);
    writeFileSync(join(scratch, 'src', 'sys', 'check.ts'), "export { ok } from 'uvu/assert';\n");
    const violations = cruise(scratch, ['src']).map((v) => `${v.rule.name}: ${v.from}`);
    assert.equal(violations.sort(), ['koffi-in-one-module: src/sys/epoll.ts', 'not-to-dev-dep: src/sys/check.ts']);
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
});

/** The block docs/architecture.md shows: one line per layer, highest first, as the doc draws it. */
function layerDiagram(): string {
  const width = Math.max(...layers.map((layer) => layer.folders.join('  ').length)) + 2;
  const lines = [...layers].reverse().map((layer) => `${layer.folders.join('  ').padEnd(width)}${layer.what}`);
  return ['```', ...lines, '```'].join('\n');
}

test('docs/architecture.md shows the layer list as layers.json has it', () => {
  const doc = readFileSync(join(repoRoot, 'docs', 'architecture.md'), 'utf8');
  assert.ok(doc.includes(layerDiagram()), `docs/architecture.md should contain:\n${layerDiagram()}`);
});

test.run();
