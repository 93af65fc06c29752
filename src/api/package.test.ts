// What users get from the registry is what is tested: the package is packed (`npm pack`), the tarball installed in
// a scratch project (build/api-pack/project, koffi from npm's cache), and README's example — taken from README.md,
// so the two cannot drift — type-checked against the installed types and run with node:test. All of that but the
// run happens natively while this file loads; inside the rig (no network) the prepared project is reused, since
// the run needs /dev/kvm.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { testIf } from '../../test/support/skip.js';
import { repoRoot } from '../../test/support/cc.js';
import { kvmMissing } from '../../kvm/testing/test-guest.js';
import { buildGuest, toolchainUnavailable } from '../../examples/guests/build.js';

const packDir = join(repoRoot, 'build', 'api-pack');
const project = join(packDir, 'project');
const stampFile = join(packDir, 'stamp.json');
const pkg = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { version: string; files: string[] };

/** README's example: the TypeScript block under "Using tsvmm from Node". */
function readmeExample(): string {
  const readme = readFileSync(join(repoRoot, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('## Using tsvmm from Node'));
  const block = /```ts\n([\s\S]*?)```/.exec(section);
  if (!block) throw new Error('README.md: no ```ts block under "Using tsvmm from Node"');
  return block[1];
}

interface Prepared {
  readonly key: string;
  /** What `npm pack --json` said: the files in the tarball, its size and unpacked size. */
  readonly pack: { filename: string; size: number; unpackedSize: number; files: { path: string }[] };
  readonly install: string;
  /** tsc on the example against the installed package: status and output. */
  readonly typecheck: { status: number | null; output: string };
}

function run(command: string, args: string[], cwd: string): SpawnSyncReturns<string> {
  const r = spawnSync(command, args, { cwd, encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.error) throw r.error;
  return r;
}

/** Everything the tarball and the scratch project are made from: a change to any of them prepares them again. */
function inputsKey(): string {
  const hash = createHash('sha256');
  for (const file of ['package.json', 'README.md', ...pkg.files]) {
    hash.update(file);
    hash.update(existsSync(join(repoRoot, file)) ? readFileSync(join(repoRoot, file)) : 'missing');
  }
  return hash.digest('hex');
}

function prepare(): Prepared | string {
  const key = inputsKey();
  if (existsSync(stampFile)) {
    const stamp = JSON.parse(readFileSync(stampFile, 'utf8')) as Prepared;
    if (stamp.key === key) return stamp;
  }
  if (process.env.TSVMM_IN_RIG === '1') return 'the packed project was not prepared outside the rig';
  rmSync(packDir, { recursive: true, force: true });
  mkdirSync(project, { recursive: true });
  // dist/ is built already (the tests run from it): `prepare` would rebuild it under the running tests.
  const packed = run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', packDir], repoRoot);
  if (packed.status !== 0) throw new Error(`npm pack failed:\n${packed.stderr}`);
  const pack = (JSON.parse(packed.stdout) as Prepared['pack'][])[0];
  writeFileSync(
    join(project, 'package.json'),
    JSON.stringify({ name: 'tsvmm-pack-check', private: true, type: 'module' }, null, 2),
  );
  const installed = run(
    'npm',
    ['install', '--prefer-offline', '--no-audit', '--no-fund', '--no-save', join(packDir, pack.filename)],
    project,
  );
  if (installed.status !== 0) throw new Error(`npm install of ${pack.filename} failed:\n${installed.stderr}`);
  writeFileSync(join(project, 'hello.test.ts'), readmeExample());
  // Checked as a user's project would be: strict, Node's module rules, the package's own .d.ts (skipLibCheck off).
  writeFileSync(
    join(project, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: {
        target: 'ES2022',
        module: 'NodeNext',
        moduleResolution: 'NodeNext',
        strict: true,
        skipLibCheck: false,
        types: ['node'],
        typeRoots: [join(repoRoot, 'node_modules', '@types')],
        outDir: 'out',
      },
      files: ['hello.test.ts'],
    }),
  );
  const tsc = run(process.execPath, [join(repoRoot, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', '.'], project);
  const prepared: Prepared = {
    key,
    pack,
    install: installed.stdout.trim(),
    typecheck: { status: tsc.status, output: tsc.stdout + tsc.stderr },
  };
  writeFileSync(stampFile, JSON.stringify(prepared, null, 2));
  return prepared;
}

const prepared = prepare();
const notPrepared = typeof prepared === 'string' ? prepared : null;
const ready = () => prepared as Prepared;

/** What a package user needs at run time and for types; package.json "files" says the same. */
const SHIPPED = [
  'package.json',
  'README.md',
  'dist/tsvmm.mjs',
  'dist/tsvmm-main.cjs',
  'dist/tsvmm-vcpu.mjs',
  'dist/tsvmm-vcpu.cjs',
  'dist/tsvmm-io.mjs',
  'dist/tsvmm-api.mjs',
  'dist/src/api/index.d.ts',
  'dist/src/api/machine.d.ts',
  'dist/src/api/options.d.ts',
];

testIf(test, notPrepared, 'package: the tarball holds the command, the library and its types — nothing else', () => {
  const { pack } = ready();
  assert.equal(pack.files.map((f) => f.path).sort(), [...SHIPPED].sort());
  // Measured at 2.3 MB unpacked, 0.6 MB packed; a test, guest or source map slipping in would show here.
  assert.ok(pack.unpackedSize < 4 << 20, `unpacked ${pack.unpackedSize} bytes`);
  assert.ok(pack.size < 1 << 20, `tarball ${pack.size} bytes`);
});

testIf(test, notPrepared, "package: README's example type-checks against the installed package's types", () => {
  const { typecheck } = ready();
  assert.is(typecheck.status, 0, typecheck.output);
  assert.ok(existsSync(join(project, 'out', 'hello.test.js')));
});

testIf(
  test,
  notPrepared,
  "package: `import { Machine } from 'tsvmm'` loads the installed bundle; without /dev/kvm create rejects with its message",
  () => {
    const script = `import { Machine } from 'tsvmm';
      Machine.create().then(() => console.log('created'), (e) => console.log(e.message));`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
      cwd: project,
      encoding: 'utf8',
      env: { ...process.env, TSVMM_KVM_DEVICE: '/nonexistent/kvm' },
    });
    assert.is(r.stdout, '/nonexistent/kvm: no such device — is the kvm module loaded?\n', r.stderr);
    assert.is(r.status, 0, r.stderr);
  },
);

const skip = notPrepared ?? kvmMissing() ?? (await toolchainUnavailable());

testIf(test, skip, "package: README's example passes under node --test with the installed package", async () => {
  const hello = await buildGuest('hello');
  const r = spawnSync(process.execPath, ['--test', join('out', 'hello.test.js')], {
    cwd: project,
    encoding: 'utf8',
    env: { ...process.env, TSVMM_GUEST: hello.path },
  });
  assert.is(r.status, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /^# pass 1$/m);
});

test.run();
