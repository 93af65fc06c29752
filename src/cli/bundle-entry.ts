// The entry of the bundled tsvmm (dist/tsvmm.mjs, npm's bin): one file loads several times faster than ~140
// modules, and start-up sits inside a checkpoint/restart's pause. The vCPU threads run their own bundle beside it.
// (A two-stage launcher that started the vCPU threads before loading this bundle was measured slower: the dynamic
// import costs ~10 ms and the threads' start-up competes with this one for the host's two cores.)
import { setVcpuWorkerUrl } from '../vcpu/threads.js';
import { runMain } from './main.js';

setVcpuWorkerUrl(new URL('./tsvmm-vcpu.mjs', import.meta.url));
await runMain();
