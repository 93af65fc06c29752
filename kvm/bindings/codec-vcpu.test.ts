// The kvm_cpuid2 reply decoder: KVM_GET_CPUID2 before mid-2023 (Linux 6.1 among them) leaves `nent` as the caller
// passed it, so the entry count comes from the entries KVM wrote. Pure tests on buffers filled as KVM would.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { encodeCpuid2, encodeCpuid2Request, decodeCpuid2Reply } from './codec-vcpu.js';
import { offsetOf } from './structs.js';
import type { CpuidEntry } from './types.js';

const ENTRIES = offsetOf('kvm_cpuid2', 'entries');

const table: CpuidEntry[] = [
  { function: 0, index: 0, flags: 0, eax: 0xd, ebx: 0x68747541, ecx: 0x444d4163, edx: 0x69746e65 },
  { function: 1, index: 0, flags: 0, eax: 0x663, ebx: 0x800, ecx: 0xf6d83203, edx: 0x0f8bfbff },
  { function: 0xd, index: 1, flags: 1, eax: 0, ebx: 0, ecx: 0, edx: 0 }, // an all-zero entry is an entry
];

/** What KVM does to a request buffer: copies its entries over the first ones, and sets nent if it is a newer KVM. */
function kvmReply(request: Uint8Array, entries: CpuidEntry[], updatesNent: boolean): Uint8Array {
  const written = encodeCpuid2(entries);
  const reply = request.slice();
  reply.set(written.subarray(ENTRIES), ENTRIES);
  if (updatesNent) reply.set(written.subarray(0, ENTRIES), 0);
  return reply;
}

test('codec: a KVM_GET_CPUID2 reply holds the entries KVM wrote, whether or not KVM set nent', () => {
  for (const updatesNent of [false, true]) {
    assert.equal(
      decodeCpuid2Reply(kvmReply(encodeCpuid2Request(256), table, updatesNent)),
      table,
      `updatesNent ${updatesNent}`,
    );
    assert.equal(
      decodeCpuid2Reply(kvmReply(encodeCpuid2Request(3), table, updatesNent)),
      table,
      'a buffer of exactly the size',
    );
    assert.equal(decodeCpuid2Reply(kvmReply(encodeCpuid2Request(4), [], updatesNent)), [], 'a vCPU without CPUID');
  }
});

test.run();
