// dist/tsvmm-vcpu.mjs: a vCPU thread, run from dist/tsvmm-vcpu.cjs through V8's code cache (src/sys/code-cache.ts).
// The thread stores the cache when it ends (src/vcpu/worker.ts), when everything it ran has been compiled.
import { fileURLToPath } from 'node:url';
import { runCachedScript } from '../sys/code-cache.js';

runCachedScript(fileURLToPath(new URL('./tsvmm-vcpu.cjs', import.meta.url)));
