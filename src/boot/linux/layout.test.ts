// Every layout number the Linux loaders use, checked against C: struct boot_params / setup_header /
// boot_e820_entry against the kernel's own <asm/bootparam.h> (linux-libc-dev), and the PVH structures against a C
// definition written here from the ABI text of Xen's include/public/arch-x86/hvm/start_info.h — no system header
// carries hvm_start_info, so the C below is our transcription of that header's documented layout.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync } from 'node:fs';
import { compileC, runC } from '../../../test/support/cc.js';
import { testIf } from '../../../test/support/skip.js';
import {
  BOOT_E820_ENTRY,
  BOOT_E820_ENTRY_SIZE,
  BOOT_PARAMS,
  BOOT_PARAMS_FIELD_SIZE,
  BOOT_PARAMS_SIZE,
  CAN_USE_HEAP,
  E820_MAX_ENTRIES_ZEROPAGE,
  HVM_MEMMAP_TABLE_ENTRY,
  HVM_MEMMAP_TABLE_ENTRY_SIZE,
  HVM_MODLIST_ENTRY,
  HVM_MODLIST_ENTRY_SIZE,
  HVM_START_INFO,
  HVM_START_INFO_FIELD_SIZE,
  HVM_START_INFO_SIZE,
  KASLR_FLAG,
  KEEP_SEGMENTS,
  LOADED_HIGH,
  QUIET_FLAG,
  SETUP_HEADER,
  SETUP_HEADER_SIZE,
  XLF_CAN_BE_LOADED_ABOVE_4G,
  XLF_KERNEL_64,
  XEN_HVM_START_MAGIC_VALUE,
  XEN_HVM_MEMMAP_TYPE_RAM,
} from './layout.js';

const BOOTPARAM_H = '/usr/include/x86_64-linux-gnu/asm/bootparam.h';
const noHeader =
  existsSync(BOOTPARAM_H) || existsSync('/usr/include/asm/bootparam.h')
    ? null
    : 'no <asm/bootparam.h> (install linux-libc-dev)';

function parseLines(out: string): Map<string, number> {
  return new Map(
    out
      .trim()
      .split('\n')
      .map((l) => {
        const [k, v] = l.split(' ');
        return [k, Number(v)];
      }),
  );
}

/** "name value" lines, one per number the TS layout has, computed by the C compiler. */
function bootParamsProgram(): string {
  const lines: string[] = [
    'P("sizeof.boot_params", sizeof(struct boot_params));',
    'P("sizeof.setup_header", sizeof(struct setup_header));',
    'P("sizeof.boot_e820_entry", sizeof(struct boot_e820_entry));',
    'P("E820_MAX_ENTRIES_ZEROPAGE", E820_MAX_ENTRIES_ZEROPAGE);',
    'P("LOADED_HIGH", LOADED_HIGH); P("KASLR_FLAG", KASLR_FLAG); P("QUIET_FLAG", QUIET_FLAG);',
    'P("KEEP_SEGMENTS", KEEP_SEGMENTS); P("CAN_USE_HEAP", CAN_USE_HEAP);',
    'P("XLF_KERNEL_64", XLF_KERNEL_64); P("XLF_CAN_BE_LOADED_ABOVE_4G", XLF_CAN_BE_LOADED_ABOVE_4G);',
  ];
  for (const name of Object.keys(BOOT_PARAMS)) {
    lines.push(`P("off.${name}", offsetof(struct boot_params, ${name}));`);
    lines.push(`P("size.${name}", sizeof(((struct boot_params *)0)->${name}));`);
  }
  for (const name of Object.keys(BOOT_E820_ENTRY)) {
    lines.push(`P("e820.off.${name}", offsetof(struct boot_e820_entry, ${name}));`);
  }
  for (const name of Object.keys(SETUP_HEADER)) {
    lines.push(`P("hdr.off.${name}", offsetof(struct boot_params, hdr.${name}));`);
    lines.push(`P("hdr.size.${name}", sizeof(((struct setup_header *)0)->${name}));`);
  }
  return `#include <stdio.h>
#include <stddef.h>
#include <asm/bootparam.h>
#define P(name, v) printf("%s %lu\\n", name, (unsigned long)(v))
int main(void) {
${lines.map((l) => `  ${l}`).join('\n')}
  return 0;
}
`;
}

testIf(
  test,
  noHeader,
  'layout: boot_params, setup_header and boot_e820_entry match <asm/bootparam.h>, field by field',
  () => {
    const got = parseLines(runC(compileC(bootParamsProgram(), { name: 'linux-bootparam-layout' })));
    assert.is(got.get('sizeof.boot_params'), BOOT_PARAMS_SIZE);
    assert.is(got.get('sizeof.setup_header'), SETUP_HEADER_SIZE);
    assert.is(got.get('sizeof.boot_e820_entry'), BOOT_E820_ENTRY_SIZE);
    assert.is(got.get('E820_MAX_ENTRIES_ZEROPAGE'), E820_MAX_ENTRIES_ZEROPAGE);
    const flags = {
      LOADED_HIGH,
      KASLR_FLAG,
      QUIET_FLAG,
      KEEP_SEGMENTS,
      CAN_USE_HEAP,
      XLF_KERNEL_64,
      XLF_CAN_BE_LOADED_ABOVE_4G,
    };
    for (const [name, v] of Object.entries(flags)) assert.is(got.get(name), v, name);
    for (const [name, off] of Object.entries(BOOT_PARAMS)) {
      assert.is(got.get(`off.${name}`), off, `offsetof(boot_params, ${name})`);
      assert.is(
        got.get(`size.${name}`),
        BOOT_PARAMS_FIELD_SIZE[name as keyof typeof BOOT_PARAMS],
        `sizeof(boot_params.${name})`,
      );
    }
    for (const [name, off] of Object.entries(BOOT_E820_ENTRY))
      assert.is(got.get(`e820.off.${name}`), off, `offsetof(boot_e820_entry, ${name})`);
    for (const [name, [off, size]] of Object.entries(SETUP_HEADER)) {
      assert.is(got.get(`hdr.off.${name}`), off, `offsetof(boot_params, hdr.${name})`);
      assert.is(got.get(`hdr.size.${name}`), size, `sizeof(setup_header.${name})`);
    }
  },
);

// Transcribed from the ABI text (offsets in the comment block of start_info.h); the assertions in main() pin the
// documented offsets at compile time as well, so a typo here fails the build rather than agreeing with a TS typo.
const START_INFO_C = `#include <stdio.h>
#include <stddef.h>
#include <stdint.h>
#define XEN_HVM_START_MAGIC_VALUE 0x336ec578
#define XEN_HVM_MEMMAP_TYPE_RAM 1
struct hvm_start_info {
  uint32_t magic; uint32_t version; uint32_t flags; uint32_t nr_modules;
  uint64_t modlist_paddr; uint64_t cmdline_paddr; uint64_t rsdp_paddr;
  uint64_t memmap_paddr; uint32_t memmap_entries; uint32_t reserved;
};
struct hvm_modlist_entry { uint64_t paddr; uint64_t size; uint64_t cmdline_paddr; uint64_t reserved; };
struct hvm_memmap_table_entry { uint64_t addr; uint64_t size; uint32_t type; uint32_t reserved; };
_Static_assert(offsetof(struct hvm_start_info, modlist_paddr) == 16, "ABI: modlist_paddr at 16");
_Static_assert(offsetof(struct hvm_start_info, rsdp_paddr) == 32, "ABI: rsdp_paddr at 32");
_Static_assert(offsetof(struct hvm_start_info, memmap_paddr) == 40, "ABI: memmap_paddr at 40");
_Static_assert(offsetof(struct hvm_start_info, memmap_entries) == 48, "ABI: memmap_entries at 48");
_Static_assert(sizeof(struct hvm_start_info) == 56, "ABI: version 1 ends at 56");
_Static_assert(sizeof(struct hvm_modlist_entry) == 32, "ABI: module entry is 32 bytes");
_Static_assert(offsetof(struct hvm_memmap_table_entry, type) == 16, "ABI: type at 16");
_Static_assert(sizeof(struct hvm_memmap_table_entry) == 24, "ABI: memmap entry is 24 bytes");
#define P(name, v) printf("%s %lu\\n", name, (unsigned long)(v))
#define F(s, f) P(#s "." #f, offsetof(struct s, f)); P("size." #s "." #f, sizeof(((struct s *)0)->f))
int main(void) {
  P("sizeof.hvm_start_info", sizeof(struct hvm_start_info));
  P("sizeof.hvm_modlist_entry", sizeof(struct hvm_modlist_entry));
  P("sizeof.hvm_memmap_table_entry", sizeof(struct hvm_memmap_table_entry));
  P("XEN_HVM_START_MAGIC_VALUE", XEN_HVM_START_MAGIC_VALUE);
  P("XEN_HVM_MEMMAP_TYPE_RAM", XEN_HVM_MEMMAP_TYPE_RAM);
  F(hvm_start_info, magic); F(hvm_start_info, version); F(hvm_start_info, flags); F(hvm_start_info, nr_modules);
  F(hvm_start_info, modlist_paddr); F(hvm_start_info, cmdline_paddr); F(hvm_start_info, rsdp_paddr);
  F(hvm_start_info, memmap_paddr); F(hvm_start_info, memmap_entries); F(hvm_start_info, reserved);
  F(hvm_modlist_entry, paddr); F(hvm_modlist_entry, size); F(hvm_modlist_entry, cmdline_paddr); F(hvm_modlist_entry, reserved);
  F(hvm_memmap_table_entry, addr); F(hvm_memmap_table_entry, size); F(hvm_memmap_table_entry, type); F(hvm_memmap_table_entry, reserved);
  return 0;
}
`;

test('layout: hvm_start_info, hvm_modlist_entry and hvm_memmap_table_entry match the PVH ABI (C transcription)', () => {
  const got = parseLines(runC(compileC(START_INFO_C, { name: 'pvh-start-info-layout' })));
  assert.is(got.get('sizeof.hvm_start_info'), HVM_START_INFO_SIZE);
  assert.is(got.get('sizeof.hvm_modlist_entry'), HVM_MODLIST_ENTRY_SIZE);
  assert.is(got.get('sizeof.hvm_memmap_table_entry'), HVM_MEMMAP_TABLE_ENTRY_SIZE);
  assert.is(got.get('XEN_HVM_START_MAGIC_VALUE'), XEN_HVM_START_MAGIC_VALUE);
  assert.is(got.get('XEN_HVM_MEMMAP_TYPE_RAM'), XEN_HVM_MEMMAP_TYPE_RAM);
  for (const [f, off] of Object.entries(HVM_START_INFO)) {
    assert.is(got.get(`hvm_start_info.${f}`), off, `offsetof(hvm_start_info, ${f})`);
    assert.is(
      got.get(`size.hvm_start_info.${f}`),
      HVM_START_INFO_FIELD_SIZE[f as keyof typeof HVM_START_INFO],
      `sizeof(hvm_start_info.${f})`,
    );
  }
  for (const [f, off] of Object.entries(HVM_MODLIST_ENTRY))
    assert.is(got.get(`hvm_modlist_entry.${f}`), off, `offsetof(hvm_modlist_entry, ${f})`);
  for (const [f, off] of Object.entries(HVM_MEMMAP_TABLE_ENTRY))
    assert.is(got.get(`hvm_memmap_table_entry.${f}`), off, `offsetof(hvm_memmap_table_entry, ${f})`);
});

test('layout: the setup header table is contiguous, ordered, and ends at sizeof(struct setup_header)', () => {
  let at = SETUP_HEADER.setup_sects[0];
  for (const [name, [off, size]] of Object.entries(SETUP_HEADER)) {
    assert.is(off, at, `${name} follows the previous field`);
    at += size;
  }
  assert.is(at - SETUP_HEADER.setup_sects[0], SETUP_HEADER_SIZE);
});

test.run();
