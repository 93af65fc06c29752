// The entry of the bundled tsvmm (dist/tsvmm.mjs): one file loads several times faster than ~140 modules, and
// start-up sits inside a checkpoint/restart's pause. The vCPU threads run their own bundle beside it.
import { setVcpuWorkerUrl } from '../vcpu/threads.js';

setVcpuWorkerUrl(new URL('./tsvmm-vcpu.mjs', import.meta.url));
await import('./main.js');
