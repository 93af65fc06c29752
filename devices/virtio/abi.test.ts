// The header check for the virtio back ends: every feature bit, request/status code, ring flag and config-space
// offset the TypeScript uses is compared with what Linux's uapi headers (<linux/virtio_*.h>, <linux/falloc.h>)
// say — the same definitions the guest driver is compiled from.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync } from 'node:fs';
import { compileC, runC } from '../../test/support/cc.js';
import { testIf } from '../../test/support/skip.js';
import * as blk from './blk.js';
import * as net from './net.js';
import * as con from './console.js';
import * as queue from './queue.js';
import * as types from './types.js';

const noHeaders = existsSync('/usr/include/linux/virtio_blk.h')
  ? null
  : '<linux/virtio_*.h> are not installed (linux-libc-dev)';

const off = (struct: string, field: string) => `offsetof(struct ${struct}, ${field})`;

/** [what, TypeScript value, C expression]. */
const checks: [string, number | bigint, string][] = [
  ['VIRTIO_ID_NET', types.VIRTIO_ID_NET, 'VIRTIO_ID_NET'],
  ['VIRTIO_ID_BLOCK', types.VIRTIO_ID_BLOCK, 'VIRTIO_ID_BLOCK'],
  ['VIRTIO_ID_CONSOLE', types.VIRTIO_ID_CONSOLE, 'VIRTIO_ID_CONSOLE'],
  ['VIRTIO_ID_RNG', types.VIRTIO_ID_RNG, 'VIRTIO_ID_RNG'],
  ['VIRTIO_F_RING_INDIRECT_DESC', types.VIRTIO_F_RING_INDIRECT_DESC, 'VIRTIO_RING_F_INDIRECT_DESC'],
  ['VIRTIO_F_RING_EVENT_IDX', types.VIRTIO_F_RING_EVENT_IDX, 'VIRTIO_RING_F_EVENT_IDX'],
  ['VIRTIO_F_VERSION_1', types.VIRTIO_F_VERSION_1, 'VIRTIO_F_VERSION_1'],
  ['VIRTQ_DESC_F_NEXT', queue.VIRTQ_DESC_F_NEXT, 'VRING_DESC_F_NEXT'],
  ['VIRTQ_DESC_F_WRITE', queue.VIRTQ_DESC_F_WRITE, 'VRING_DESC_F_WRITE'],
  ['VIRTQ_DESC_F_INDIRECT', queue.VIRTQ_DESC_F_INDIRECT, 'VRING_DESC_F_INDIRECT'],
  ['VIRTQ_AVAIL_F_NO_INTERRUPT', queue.VIRTQ_AVAIL_F_NO_INTERRUPT, 'VRING_AVAIL_F_NO_INTERRUPT'],
  ['VIRTQ_USED_F_NO_NOTIFY', queue.VIRTQ_USED_F_NO_NOTIFY, 'VRING_USED_F_NO_NOTIFY'],
  ['VIRTQ_DESC_SIZE', queue.VIRTQ_DESC_SIZE, 'sizeof(struct vring_desc)'],
  ['VIRTQ_USED_ELEM_SIZE', queue.VIRTQ_USED_ELEM_SIZE, 'sizeof(struct vring_used_elem)'],
  ['VIRTQ_DESC_ALIGN', queue.VIRTQ_DESC_ALIGN, 'VRING_DESC_ALIGN_SIZE'],
  ['VIRTQ_AVAIL_ALIGN', queue.VIRTQ_AVAIL_ALIGN, 'VRING_AVAIL_ALIGN_SIZE'],
  ['VIRTQ_USED_ALIGN', queue.VIRTQ_USED_ALIGN, 'VRING_USED_ALIGN_SIZE'],
  ['availRingBytes(256)', queue.availRingBytes(256), 'sizeof(struct vring_avail) + 2 * 256 + 2'],
  ['usedRingBytes(256)', queue.usedRingBytes(256), 'sizeof(struct vring_used) + 8 * 256 + 2'],

  ...(
    [
      'SIZE_MAX',
      'SEG_MAX',
      'GEOMETRY',
      'RO',
      'BLK_SIZE',
      'FLUSH',
      'TOPOLOGY',
      'CONFIG_WCE',
      'MQ',
      'DISCARD',
      'WRITE_ZEROES',
    ] as const
  ).map((f): [string, bigint, string] => [`VIRTIO_BLK_F_${f}`, blk[`VIRTIO_BLK_F_${f}`], `VIRTIO_BLK_F_${f}`]),
  ...(['IN', 'OUT', 'FLUSH', 'GET_ID', 'DISCARD', 'WRITE_ZEROES'] as const).map((t): [string, number, string] => [
    `VIRTIO_BLK_T_${t}`,
    blk[`VIRTIO_BLK_T_${t}`],
    `VIRTIO_BLK_T_${t}`,
  ]),
  ['VIRTIO_BLK_S_OK', blk.VIRTIO_BLK_S_OK, 'VIRTIO_BLK_S_OK'],
  ['VIRTIO_BLK_S_IOERR', blk.VIRTIO_BLK_S_IOERR, 'VIRTIO_BLK_S_IOERR'],
  ['VIRTIO_BLK_S_UNSUPP', blk.VIRTIO_BLK_S_UNSUPP, 'VIRTIO_BLK_S_UNSUPP'],
  ['VIRTIO_BLK_ID_BYTES', blk.VIRTIO_BLK_ID_BYTES, 'VIRTIO_BLK_ID_BYTES'],
  ['VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP', blk.VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP, 'VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP'],
  ['VIRTIO_BLK_REQ_HEADER_SIZE', blk.VIRTIO_BLK_REQ_HEADER_SIZE, 'sizeof(struct virtio_blk_outhdr)'],
  ['VIRTIO_BLK_SEGMENT_SIZE', blk.VIRTIO_BLK_SEGMENT_SIZE, 'sizeof(struct virtio_blk_discard_write_zeroes)'],
  ['BLK_CFG_CAPACITY', blk.BLK_CFG_CAPACITY, off('virtio_blk_config', 'capacity')],
  ['BLK_CFG_SIZE_MAX', blk.BLK_CFG_SIZE_MAX, off('virtio_blk_config', 'size_max')],
  ['BLK_CFG_SEG_MAX', blk.BLK_CFG_SEG_MAX, off('virtio_blk_config', 'seg_max')],
  ['BLK_CFG_GEOMETRY', blk.BLK_CFG_GEOMETRY, off('virtio_blk_config', 'geometry')],
  ['BLK_CFG_BLK_SIZE', blk.BLK_CFG_BLK_SIZE, off('virtio_blk_config', 'blk_size')],
  ['BLK_CFG_PHYSICAL_BLOCK_EXP', blk.BLK_CFG_PHYSICAL_BLOCK_EXP, off('virtio_blk_config', 'physical_block_exp')],
  ['BLK_CFG_ALIGNMENT_OFFSET', blk.BLK_CFG_ALIGNMENT_OFFSET, off('virtio_blk_config', 'alignment_offset')],
  ['BLK_CFG_MIN_IO_SIZE', blk.BLK_CFG_MIN_IO_SIZE, off('virtio_blk_config', 'min_io_size')],
  ['BLK_CFG_OPT_IO_SIZE', blk.BLK_CFG_OPT_IO_SIZE, off('virtio_blk_config', 'opt_io_size')],
  ['BLK_CFG_WRITEBACK', blk.BLK_CFG_WRITEBACK, off('virtio_blk_config', 'wce')],
  ['BLK_CFG_NUM_QUEUES', blk.BLK_CFG_NUM_QUEUES, off('virtio_blk_config', 'num_queues')],
  ['BLK_CFG_MAX_DISCARD_SECTORS', blk.BLK_CFG_MAX_DISCARD_SECTORS, off('virtio_blk_config', 'max_discard_sectors')],
  ['BLK_CFG_MAX_DISCARD_SEG', blk.BLK_CFG_MAX_DISCARD_SEG, off('virtio_blk_config', 'max_discard_seg')],
  [
    'BLK_CFG_DISCARD_SECTOR_ALIGNMENT',
    blk.BLK_CFG_DISCARD_SECTOR_ALIGNMENT,
    off('virtio_blk_config', 'discard_sector_alignment'),
  ],
  [
    'BLK_CFG_MAX_WRITE_ZEROES_SECTORS',
    blk.BLK_CFG_MAX_WRITE_ZEROES_SECTORS,
    off('virtio_blk_config', 'max_write_zeroes_sectors'),
  ],
  ['BLK_CFG_MAX_WRITE_ZEROES_SEG', blk.BLK_CFG_MAX_WRITE_ZEROES_SEG, off('virtio_blk_config', 'max_write_zeroes_seg')],
  [
    'BLK_CFG_WRITE_ZEROES_MAY_UNMAP',
    blk.BLK_CFG_WRITE_ZEROES_MAY_UNMAP,
    off('virtio_blk_config', 'write_zeroes_may_unmap'),
  ],
  ['VIRTIO_BLK_CONFIG_SIZE', blk.VIRTIO_BLK_CONFIG_SIZE, `${off('virtio_blk_config', 'unused1')} + 3`],
  ['FALLOC_FL_KEEP_SIZE', blk.FALLOC_FL_KEEP_SIZE, 'FALLOC_FL_KEEP_SIZE'],
  ['FALLOC_FL_PUNCH_HOLE', blk.FALLOC_FL_PUNCH_HOLE, 'FALLOC_FL_PUNCH_HOLE'],
  ['FALLOC_FL_ZERO_RANGE', blk.FALLOC_FL_ZERO_RANGE, 'FALLOC_FL_ZERO_RANGE'],

  ...(['CSUM', 'GUEST_CSUM', 'MAC', 'GUEST_TSO4', 'MRG_RXBUF', 'STATUS', 'CTRL_VQ'] as const).map(
    (f): [string, bigint, string] => [`VIRTIO_NET_F_${f}`, net[`VIRTIO_NET_F_${f}`], `VIRTIO_NET_F_${f}`],
  ),
  ['VIRTIO_NET_S_LINK_UP', net.VIRTIO_NET_S_LINK_UP, 'VIRTIO_NET_S_LINK_UP'],
  ['VIRTIO_NET_HDR_F_NEEDS_CSUM', net.VIRTIO_NET_HDR_F_NEEDS_CSUM, 'VIRTIO_NET_HDR_F_NEEDS_CSUM'],
  ['VIRTIO_NET_HDR_GSO_NONE', net.VIRTIO_NET_HDR_GSO_NONE, 'VIRTIO_NET_HDR_GSO_NONE'],
  ['NET_HDR_SIZE', net.NET_HDR_SIZE, 'sizeof(struct virtio_net_hdr_v1)'],
  ['NET_HDR_FLAGS', net.NET_HDR_FLAGS, off('virtio_net_hdr_v1', 'flags')],
  ['NET_HDR_GSO_TYPE', net.NET_HDR_GSO_TYPE, off('virtio_net_hdr_v1', 'gso_type')],
  ['NET_HDR_CSUM_START', net.NET_HDR_CSUM_START, off('virtio_net_hdr_v1', 'csum_start')],
  ['NET_HDR_CSUM_OFFSET', net.NET_HDR_CSUM_OFFSET, off('virtio_net_hdr_v1', 'csum_offset')],
  ['NET_HDR_NUM_BUFFERS', net.NET_HDR_NUM_BUFFERS, off('virtio_net_hdr_v1', 'num_buffers')],
  ['NET_CFG_MAC', net.NET_CFG_MAC, off('virtio_net_config', 'mac')],
  ['NET_CFG_STATUS', net.NET_CFG_STATUS, off('virtio_net_config', 'status')],
  ['VIRTIO_NET_CONFIG_SIZE', net.VIRTIO_NET_CONFIG_SIZE, off('virtio_net_config', 'max_virtqueue_pairs')],

  ['VIRTIO_CONSOLE_F_SIZE', con.VIRTIO_CONSOLE_F_SIZE, 'VIRTIO_CONSOLE_F_SIZE'],
  ['VIRTIO_CONSOLE_F_MULTIPORT', con.VIRTIO_CONSOLE_F_MULTIPORT, 'VIRTIO_CONSOLE_F_MULTIPORT'],
  ['VIRTIO_CONSOLE_F_EMERG_WRITE', con.VIRTIO_CONSOLE_F_EMERG_WRITE, 'VIRTIO_CONSOLE_F_EMERG_WRITE'],
  ['CONSOLE_CFG_COLS', con.CONSOLE_CFG_COLS, off('virtio_console_config', 'cols')],
  ['CONSOLE_CFG_ROWS', con.CONSOLE_CFG_ROWS, off('virtio_console_config', 'rows')],
  ['CONSOLE_CFG_MAX_NR_PORTS', con.CONSOLE_CFG_MAX_NR_PORTS, off('virtio_console_config', 'max_nr_ports')],
  ['CONSOLE_CFG_EMERG_WR', con.CONSOLE_CFG_EMERG_WR, off('virtio_console_config', 'emerg_wr')],
  ['VIRTIO_CONSOLE_CONFIG_SIZE', con.VIRTIO_CONSOLE_CONFIG_SIZE, 'sizeof(struct virtio_console_config)'],
];

testIf(
  test,
  noHeaders,
  'virtio abi: feature bits, request codes, ring flags and config layouts match <linux/virtio_*.h>',
  () => {
    const lines = [
      '#include <stdio.h>',
      '#include <stddef.h>',
      '#include <linux/virtio_ids.h>',
      '#include <linux/virtio_config.h>',
      '#include <linux/virtio_ring.h>',
      '#include <linux/virtio_blk.h>',
      '#include <linux/virtio_net.h>',
      '#include <linux/virtio_console.h>',
      '#include <linux/falloc.h>',
      'int main(void) {',
    ];
    for (const [i, [, , c]] of checks.entries())
      lines.push(`  printf("%d %llu\\n", ${i}, (unsigned long long)(${c}));`);
    lines.push('  return 0;', '}', '');
    const got = runC(compileC(lines.join('\n'), { name: 'virtio-abi' }))
      .trim()
      .split('\n')
      .map((l) => BigInt(l.split(' ')[1]));
    const wrong = checks.flatMap(([name, v], i) =>
      BigInt(v) === got[i] ? [] : [`${name}: tsvmm ${v}, header ${got[i]}`],
    );
    assert.equal(wrong, [], wrong.join('\n'));
  },
);

test.run();
