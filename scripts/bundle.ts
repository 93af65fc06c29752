// Bundles tsvmm: dist/tsvmm.mjs (the command) loads dist/tsvmm-main.cjs, and dist/tsvmm-vcpu.mjs (a vCPU thread)
// loads dist/tsvmm-vcpu.cjs, both through V8's code cache (src/sys/code-cache.ts); dist/tsvmm-io.mjs is the I/O
// thread; dist/tsvmm-api.mjs is the Node library (package.json "exports"). Run by `npm run build` after tsc has type-checked everything. koffi stays external: it is a native addon loaded from node_modules.
import { build } from 'esbuild';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

const common = {
  bundle: true,
  platform: 'node' as const,
  format: 'esm' as const,
  target: 'node20',
  external: ['koffi'],
  sourcemap: true,
  logLevel: 'warning' as const,
  // ESM output has no `require`; src/sys/libc.ts loads koffi through createRequire, which needs nothing here, but
  // esbuild's CommonJS shims for bundled CJS code do.
  banner: {
    js: "import { createRequire as __tsvmmCreateRequire } from 'node:module'; const require = __tsvmmCreateRequire(import.meta.url);",
  },
};

/** CommonJS bundles (vm.Script and its code cache need a script): import.meta.url becomes the bundle's own URL. */
const cjs = {
  ...common,
  format: 'cjs' as const,
  banner: { js: "var __tsvmm_module_url = require('node:url').pathToFileURL(__filename).href;" },
  define: { 'import.meta.url': '__tsvmm_module_url' },
};

await Promise.all([
  build({
    ...common,
    entryPoints: [join(root, 'src/cli/code-cache-loader.ts')],
    outfile: join(root, 'dist/tsvmm.mjs'),
    banner: {},
  }),
  build({ ...cjs, entryPoints: [join(root, 'src/cli/bundle-entry.ts')], outfile: join(root, 'dist/tsvmm-main.cjs') }),
  build({
    ...common,
    entryPoints: [join(root, 'src/vcpu/thread-loader.ts')],
    outfile: join(root, 'dist/tsvmm-vcpu.mjs'),
    banner: {},
  }),
  build({ ...cjs, entryPoints: [join(root, 'src/vcpu/worker.ts')], outfile: join(root, 'dist/tsvmm-vcpu.cjs') }),
  // The library (`import { Machine } from 'tsvmm'`); its threads run the two bundles below and above.
  build({ ...common, entryPoints: [join(root, 'src/api/bundle-entry.ts')], outfile: join(root, 'dist/tsvmm-api.mjs') }),
  // The I/O thread starts once per machine with virtio devices, off the start-up path: no code cache.
  build({ ...common, entryPoints: [join(root, 'src/io/worker.ts')], outfile: join(root, 'dist/tsvmm-io.mjs') }),
]);
