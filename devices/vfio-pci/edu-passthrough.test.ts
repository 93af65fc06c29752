// vfio-pci end to end: QEMU's edu device, bound to vfio-pci on the host (the rig: q35 + intel-iommu), passed
// through to a tiny 32-bit guest that finds it on bus 0 and drives it — identity and liveness registers through the
// BAR's memory slot, the factorial unit, an MSI delivered by KVM from VFIO's eventfd, and DMA both ways between guest
// RAM and the device (guest RAM is mapped in the IOMMU at IOVA = guest-physical) — then resets the machine and does it
// all again. The guest prints what it saw on COM1 and ends through isa-debug-exit.
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { assembleFlat } from '../../test/support/asm.js';
import { EDU_GUEST_ROUTINES, EDU_IDT, EDU_MSI_TO_VECTOR_0X40, EDU_SLOT, eduCfgAddress } from './testing/edu-asm.js';
import { testIf } from '../../test/support/skip.js';
import { runTsvmm } from '../../test/support/tsvmm.js';
import { QmpClientError } from '../../test/support/qmp-client.js';
import { removeDir, scratchDir, startVm } from '../../test/support/vm-process.js';
import { vfioMissing, withVfioDevice } from '../../test/support/vfio-devices.js';

const noEdu = vfioMissing('edu');

export const eduGuest = () =>
  assembleFlat(`.code32
  mov $0x9000, %esp
  mov $0x3f8, %dx
  # BAR 0, and COMMAND = MEMORY | MASTER
  mov $0x${eduCfgAddress(0x10).toString(16)}, %eax
  call cfgread
  and $0xfffffff0, %eax
  mov %eax, %esi
  mov $0x${eduCfgAddress(0x04).toString(16)}, %eax
  mov $0xcf8, %dx
  out %eax, %dx
  mov $0xcfc, %dx
  mov $0x0006, %ax
  out %ax, %dx

  # an interrupt a previous user of the device left raised (edu's reset does not clear its status): acknowledged
  mov 0x24(%esi), %eax
  mov %eax, 0x64(%esi)

  # identity (0x00) and liveness (0x04: reads back inverted)
  lea s_id, %edi
  call puts
  mov 0x00(%esi), %eax
  call puthex
  lea s_live, %edi
  call puts
  movl $0x12345678, 0x04(%esi)
  mov 0x04(%esi), %eax
  call puthex

  # factorial of 5 (0x08), busy while status (0x20) bit 0
  movl $5, 0x08(%esi)
1:pause
  testl $1, 0x20(%esi)
  jnz 1b
  lea s_fact, %edi
  call puts
  mov 0x08(%esi), %eax
  call puthex

  # MSI: the capability the list starts with, vector 0x40 to APIC 0; an IDT gate for 0x40; LAPIC on
  mov $0x${eduCfgAddress(0x34).toString(16)}, %eax
  call cfgread
  and $0xfc, %eax
  mov %eax, %ebx
  or $0x${eduCfgAddress(0).toString(16)}, %ebx
  mov %ebx, %eax
  call cfgread
  cmp $0x05, %al
  jne fail
${EDU_MSI_TO_VECTOR_0X40}  movl $0x1, 0x60(%esi)
  mov $200000000, %ecx
2:cmpl $0, count
  jne 3f
  pause
  loop 2b
3:cli
  lea s_msi, %edi
  call puts
  mov count, %eax
  call puthex
  lea s_status, %edi
  call puts
  mov 0x24(%esi), %eax
  call puthex
  mov 0x24(%esi), %eax
  mov %eax, 0x64(%esi)

  # DMA: 8 bytes of RAM into the device's buffer (0x40000), back into other RAM
  lea pattern, %eax
  mov %eax, 0x80(%esi)
  movl $0x40000, 0x88(%esi)
  movl $8, 0x90(%esi)
  movl $1, 0x98(%esi)
4:pause
  testl $1, 0x98(%esi)
  jnz 4b
  movl $0x40000, 0x80(%esi)
  lea back, %eax
  mov %eax, 0x88(%esi)
  movl $8, 0x90(%esi)
  movl $3, 0x98(%esi)
5:pause
  testl $1, 0x98(%esi)
  jnz 5b
  lea s_dma, %edi
  call puts
  mov back, %eax
  call puthex
  lea s_dma2, %edi
  call puts
  mov back + 4, %eax
  call puthex
  # The first boot resets the machine (i8042): VFIO resets edu, config space is back at power-on, and the second
  # boot must find and drive it the same way. The boot count lives at 0x3000, outside the image the reset reloads.
  incl 0x3000
  cmpl $2, 0x3000
  jae 6f
  mov $0xfe, %al
  out %al, $0x64
  cli
  hlt
6:mov $0xf4, %dx
  mov $0x10, %al
  out %al, %dx
  hlt
fail:
  mov $0xf4, %dx
  mov $0x7f, %al
  out %al, %dx
  hlt

handler:
  incl count
  movl $0, 0xfee000b0
  iret

${EDU_GUEST_ROUTINES}s_id: .asciz "id "
s_live: .asciz "live "
s_fact: .asciz "fact "
s_msi: .asciz "msi "
s_status: .asciz "status "
s_dma: .asciz "dma "
s_dma2: .asciz "dma "
.balign 8
pattern: .ascii "tsvmm-ok"
back: .quad 0
count: .long 0
${EDU_IDT}`);

testIf(
  test,
  noEdu,
  'vfio-pci edu: identity, liveness, factorial, an MSI and DMA both ways through a passed-through edu device, again after a guest reset',
  async () => {
    const r = await withVfioDevice('edu', (edu) =>
      runTsvmm([
        '-m',
        '64M',
        '-device',
        'isa-debug-exit',
        '-device',
        `vfio-pci,host=${edu.bdf}`,
        '-device',
        `loader,file=${eduGuest()},addr=0x1000,mode=protected`,
        '--timeout',
        '120',
      ]),
    );
    const boot = [
      'id 010000ed',
      'live edcba987',
      'fact 00000078',
      'msi 00000001',
      'status 00000001',
      'dma 6d767374', // "tsvmm-ok", the RAM the device read, as the device wrote it back
      'dma 6b6f2d6d',
    ];
    assert.is(r.stdout, [...boot, ...boot, ''].join('\n'), r.stderr);
    assert.match(r.stderr, /guest reset/);
    assert.is(r.status, (0x10 << 1) | 1, r.stderr);
  },
);

testIf(test, noEdu, 'vfio-pci edu: a sysfsdev= that names no device is one line and status 4', async () => {
  const r = await withVfioDevice('edu', (edu) =>
    runTsvmm(['-m', '16M', '-device', `vfio-pci,sysfsdev=/sys/bus/pci/devices/${edu.bdf}/nope`]),
  );
  assert.is(r.status, 4);
  assert.match(r.stderr, /vfio0: no PCI device at \/sys\/bus\/pci\/devices\/.*\/nope/);
});

testIf(
  test,
  noEdu,
  "vfio-pci edu: query-pci shows the passed-through function; cpr-save and migrate to a file (reboot mode) are refused with QEMU's text while the guest is not suspended, the guest untouched",
  () =>
    withVfioDevice('edu', async (edu) => {
      const dir = scratchDir('tsvmm-vfio-edu-');
      const vm = await startVm(['-m', '16M', '-S', '-device', `vfio-pci,host=${edu.bdf},id=edu0`], {
        dir,
        name: 'edu',
      });
      try {
        const [bus0] = await vm.qmp.execute('query-pci');
        const fn = bus0.devices.find((d: { qdev_id: string }) => d.qdev_id === 'edu0');
        assert.ok(fn, JSON.stringify(bus0));
        assert.equal(fn.id.vendor, 0x1234);
        assert.equal(fn.id.device, 0x11e8);
        assert.is(fn.slot, EDU_SLOT);
        assert.equal(fn.regions, [
          { bar: 0, type: 'memory', address: 0xc0000000, size: 0x100000, prefetch: false, mem_type_64: false },
        ]);
        // QEMU's refusal: reboot mode with a VFIO device needs the guest suspended.
        const refused = /^VFIO device only supports cpr-reboot for runstate suspended$/;
        for (const [command, args] of [
          ['cpr-save', { filename: join(dir, 'vm.cpr'), mode: 'reboot' }],
          ['migrate', { uri: `file:${join(dir, 'vm.mig')}` }],
        ] as const) {
          const error = await vm.qmp.execute(command, args).catch((e: unknown) => e);
          assert.instance(error, QmpClientError, command);
          assert.match((error as QmpClientError).desc, refused, command);
        }
        assert.equal(await vm.qmp.execute('query-status'), { running: false, status: 'prelaunch' });
        await vm.qmp.execute('quit');
        assert.is(await vm.exited, 0);
      } finally {
        await vm.dispose();
        removeDir(dir);
      }
    }),
);

test.run();
