// dist/tsvmm-api.mjs, the module `import 'tsvmm'` loads: the library in one file, with its threads pointed at the
// bundles beside it (dist/tsvmm-vcpu.mjs, dist/tsvmm-io.mjs, which the command uses too). Unbundled, from
// dist/src/api/index.js, the threads find dist/src/vcpu/worker.js and dist/src/io/worker.js by themselves.
import { setVcpuWorkerUrl } from '../vcpu/threads.js';
import { setIoWorkerUrl } from '../io/thread.js';

setVcpuWorkerUrl(new URL('./tsvmm-vcpu.mjs', import.meta.url));
setIoWorkerUrl(new URL('./tsvmm-io.mjs', import.meta.url));

export * from './index.js';
