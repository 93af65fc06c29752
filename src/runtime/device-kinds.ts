// Every kind of device tsvmm can build, each registered from its own file (devices/registration.ts says what a
// registration holds). A machine plans its devices kind by kind in this order, and their records and checkpoint
// sections follow it: a new kind goes at the end, and no entry moves (a checkpoint written before must load after).
import { acpiPmDevice } from '../../devices/acpi-pm.js';
import { debugExitDevice } from '../../devices/debug-exit.js';
import { debugconDevice } from '../../devices/debugcon.js';
import { fwCfgDevice } from '../../devices/fw-cfg.js';
import { i8042Device } from '../../devices/i8042.js';
import { pciHostDevice } from '../../devices/pci/host-bridge.js';
import { pvpanicDevice } from '../../devices/pvpanic.js';
import type { SpecOf } from '../../devices/registration.js';
import { rtcDevice } from '../../devices/rtc.js';
import { serialDevice } from '../../devices/serial.js';
import { virtioPciDevice } from '../../devices/virtio/virtio-pci.js';
import { vfioPciDevice } from '../../devices/vfio-pci/vfio-pci.js';

export const DEVICE_KINDS = [
  serialDevice,
  debugconDevice,
  debugExitDevice,
  rtcDevice,
  i8042Device,
  fwCfgDevice,
  pciHostDevice,
  virtioPciDevice,
  acpiPmDevice,
  pvpanicDevice,
  vfioPciDevice,
] as const;

/** What the device table holds for one device, of any kind: typed by the kinds' own files. */
export type DeviceSpec = SpecOf<(typeof DEVICE_KINDS)[number]>;
