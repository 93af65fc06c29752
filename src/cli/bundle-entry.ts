// The main bundle (dist/tsvmm-main.cjs), loaded by dist/tsvmm.mjs (src/cli/code-cache-loader.ts) from V8's code
// cache: one file loads several times faster than ~140 modules, and start-up sits inside a checkpoint/restart's
// pause. The vCPU threads run their own bundle beside it.
import { setVcpuWorkerUrl } from '../vcpu/threads.js';
import { setIoWorkerUrl } from '../io/thread.js';
import { runMain } from './main.js';

setVcpuWorkerUrl(new URL('./tsvmm-vcpu.mjs', import.meta.url));
setIoWorkerUrl(new URL('./tsvmm-io.mjs', import.meta.url));
void runMain();
