// dist/tsvmm.mjs: runs the main bundle dist/tsvmm-main.cjs through V8's code cache (see code-cache.ts). The cache is
// stored once the guest runs (src/cli/main.ts calls globalThis.__tsvmmSaveCodeCache then).
import { fileURLToPath } from 'node:url';
import { runCachedScript } from '../sys/code-cache.js';

runCachedScript(fileURLToPath(new URL('./tsvmm-main.cjs', import.meta.url)));
