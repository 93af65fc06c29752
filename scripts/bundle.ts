// Bundles tsvmm into dist/tsvmm.mjs (the command) and dist/tsvmm-vcpu.mjs (a vCPU thread). Run by `npm run build`
// after tsc has type-checked everything. koffi stays external: it is a native addon loaded from node_modules.
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
  banner: { js: "import { createRequire as __tsvmmCreateRequire } from 'node:module'; const require = __tsvmmCreateRequire(import.meta.url);" },
};

await Promise.all([
  build({ ...common, entryPoints: [join(root, 'src/cli/bundle-entry.ts')], outfile: join(root, 'dist/tsvmm.mjs') }),
  build({ ...common, entryPoints: [join(root, 'src/vcpu/worker.ts')], outfile: join(root, 'dist/tsvmm-vcpu.mjs') }),
]);
