// devices/i8042.ts — the PC keyboard controller (8042) at ports 0x60 (data) and 0x64 (status/command), with a
// PS/2 keyboard on its first port and a PS/2 mouse on its auxiliary port, following QEMU's pckbd.c and ps2.c
// (the "extended state" model: a controller byte, a keyboard queue and a mouse queue feed one output buffer).
//
// Nobody types or moves the mouse unless the host calls `pushScancodes`; the devices still answer every command
// the way QEMU's do, so guests probing the keyboard and the mouse (Linux i8042/atkbd/psmouse) see real hardware.
// The controller's pulse-reset line is wired to MachineControl.reset. The A20 gate is recorded in the output port
// only: under KVM A20 is always enabled.
import {
  array,
  bool,
  u8,
  clearRecord,
  within,
  withHooks,
  type Descriptor,
  type StateOf,
} from '../cpr/vmstate/vmstate.js';
import type { AccessSize, IoHandler, IoRegion, IrqLine, MachineControl } from '../src/bus/types.js';
import { singleRecordDevice } from './registration.js';

export const I8042_DATA_PORT = 0x60;
export const I8042_COMMAND_PORT = 0x64;
export const I8042_KBD_IRQ = 1;
export const I8042_AUX_IRQ = 12;

/** Handler offsets: the device is one IoHandler whose offset is the port minus 0x60. */
const OFFSET_DATA = 0;
const OFFSET_COMMAND = I8042_COMMAND_PORT - I8042_DATA_PORT;

// ---- status register (read from 0x64) -------------------------------------------------------------------------
export const STAT_OBF = 0x01; // output buffer full: a byte waits at 0x60
export const STAT_IBF = 0x02; // input buffer full (never: writes are processed at once)
export const STAT_SELFTEST = 0x04; // system flag: set by a successful self test
export const STAT_CMD = 0x08; // last write was to 0x64 (QEMU keeps it set)
export const STAT_UNLOCKED = 0x10; // keyboard not inhibited by the key lock
export const STAT_AUX_OBF = 0x20; // the waiting byte comes from the auxiliary (mouse) port
export const STAT_TIMEOUT = 0x40; // general time-out (never)
export const STAT_PARITY = 0x80; // parity error (never)

// ---- controller command byte ("mode", read with 0x20, written with 0x60) -------------------------------------
export const MODE_KBD_INT = 0x01; // keyboard bytes raise IRQ 1
export const MODE_AUX_INT = 0x02; // mouse bytes raise IRQ 12
export const MODE_SYS = 0x04; // system flag
export const MODE_NO_KEYLOCK = 0x08; // ignore the key lock
export const MODE_DISABLE_KBD = 0x10; // keyboard port disabled: its bytes stay queued
export const MODE_DISABLE_AUX = 0x20; // mouse port disabled: its bytes stay queued
export const MODE_KCC = 0x40; // translate keyboard scan codes to set 1 (XT)

// ---- controller commands (written to 0x64) --------------------------------------------------------------------
export const CCMD_READ_MODE = 0x20;
export const CCMD_WRITE_MODE = 0x60; // next byte at 0x60 is the command byte
export const CCMD_AUX_DISABLE = 0xa7;
export const CCMD_AUX_ENABLE = 0xa8;
export const CCMD_AUX_TEST = 0xa9; // replies 0x00: interface OK
export const CCMD_SELF_TEST = 0xaa; // replies 0x55
export const CCMD_KBD_TEST = 0xab; // replies 0x00: interface OK
export const CCMD_KBD_DISABLE = 0xad;
export const CCMD_KBD_ENABLE = 0xae;
export const CCMD_READ_INPORT = 0xc0; // replies 0x80: keyboard not inhibited
export const CCMD_READ_OUTPORT = 0xd0;
export const CCMD_WRITE_OUTPORT = 0xd1; // next byte is the output port; bit 0 clear resets the CPU
export const CCMD_WRITE_KBD_OBUF = 0xd2; // next byte appears in the output buffer as if from the keyboard
export const CCMD_WRITE_AUX_OBUF = 0xd3; // ... as if from the mouse
export const CCMD_WRITE_AUX = 0xd4; // next byte goes to the mouse
export const CCMD_DISABLE_A20 = 0xdd;
export const CCMD_ENABLE_A20 = 0xdf;
export const CCMD_READ_TEST_INPUTS = 0xe0;
export const CCMD_PULSE_BITS = 0xf0; // 0xF0-0xFF: pulse output-port bits whose command bit is 0
export const CCMD_RESET = 0xfe; // pulse bit 0: CPU reset
const CCMD_NO_OP = 0xff;

// ---- output port ----------------------------------------------------------------------------------------------
export const OUT_RESET = 0x01; // 1 = CPU running; writing 0 resets it
export const OUT_A20 = 0x02; // A20 gate
const OUT_OBF = 0x10; // mirrors STAT_OBF
const OUT_AUX_OBF = 0x20; // mirrors STAT_AUX_OBF
const OUT_ONES = 0xcc; // bits QEMU reports as 1

// ---- PS/2 keyboard commands and replies -----------------------------------------------------------------------
export const KBD_CMD_SET_LEDS = 0xed;
export const KBD_CMD_ECHO = 0xee;
export const KBD_CMD_SCANCODE = 0xf0; // next byte: 0 = query, 1-3 = select scan code set
export const KBD_CMD_GET_ID = 0xf2;
export const KBD_CMD_SET_RATE = 0xf3;
export const KBD_CMD_ENABLE = 0xf4; // start scanning
export const KBD_CMD_RESET_DISABLE = 0xf5;
export const KBD_CMD_RESET_ENABLE = 0xf6;
const KBD_CMD_SET_TYPEMATIC = 0xfa; // set-3 "all keys typematic/make/break": acknowledged only
const KBD_CMD_SET_MAKE_BREAK = 0xfc; // set-3 per-key mode: acknowledged only, takes one byte
export const KBD_CMD_RESET = 0xff;
export const KBD_REPLY_POR = 0xaa; // power-on self test passed
export const KBD_REPLY_ID = 0xab; // first byte of the MF2 keyboard ID
export const KBD_REPLY_ACK = 0xfa;
export const KBD_REPLY_RESEND = 0xfe;
const KBD_ID_TRANSLATED = 0x41; // second ID byte as seen through translation
const KBD_ID_RAW = 0x83;
/** Scan code set numbers as a guest reads them through set-1 translation (sets 1, 2, 3). */
const TRANSLATED_SET_NUMBER = [0, 0x43, 0x41, 0x3f] as const;

// ---- PS/2 mouse commands --------------------------------------------------------------------------------------
const AUX_SET_SCALE11 = 0xe6;
const AUX_SET_SCALE21 = 0xe7;
const AUX_SET_RES = 0xe8; // takes one byte
const AUX_GET_STATUS = 0xe9; // replies status, resolution, sample rate
const AUX_SET_STREAM = 0xea;
const AUX_POLL = 0xeb; // replies one movement packet
const AUX_RESET_WRAP = 0xec;
const AUX_SET_WRAP = 0xee; // echo mode
const AUX_SET_REMOTE = 0xf0;
const AUX_GET_TYPE = 0xf2;
const AUX_SET_SAMPLE = 0xf3; // takes one byte
const AUX_ENABLE_DEV = 0xf4;
const AUX_DISABLE_DEV = 0xf5;
const AUX_SET_DEFAULT = 0xf6;
const AUX_RESET = 0xff;
const AUX_ACK = 0xfa;
const AUX_STATUS_REMOTE = 0x40;
const AUX_STATUS_ENABLED = 0x20;
const AUX_STATUS_SCALE21 = 0x10;
const AUX_TYPE_IMPS2 = 3; // IntelliMouse: after sample rates 200, 100, 80
const AUX_TYPE_IMEX = 4; // IntelliMouse Explorer: after sample rates 200, 200, 80
const AUX_PACKET_ALWAYS_ONE = 0x08; // bit 3 of the first packet byte

// ---- queues ---------------------------------------------------------------------------------------------------
/** The PS/2 protocol's buffer: scan codes (and mouse bytes) beyond 16 pending are dropped, as in QEMU. */
export const PS2_QUEUE_SIZE = 16;
/** Keyboard ring: 16 queued bytes plus room for a command reply put in front of them. */
const KBD_RING = 32;
const AUX_RING = PS2_QUEUE_SIZE;

/** Where the byte in the output buffer came from. */
const SRC_NONE = 0;
const SRC_KBD = 1;
const SRC_AUX = 2;
const SRC_CTRL = 3;

/** Which controller reply waits (a controller reply is one byte; a newer one replaces it, as in QEMU). */
const CTRL_NONE = 0;
const CTRL_KBD = 1; // delivered as keyboard data (IRQ 1)
const CTRL_AUX = 2; // delivered as mouse data (IRQ 12)

const NO_PENDING_COMMAND = 0; // no command waits for its data byte (0 is never such a command)

/** What the controller and both PS/2 devices remember. */
export const i8042State = withHooks(
  {
    name: 'i8042',
    version: 1,
    minVersion: 1,
    fields: [
      u8('status'), // status register
      u8('mode'), // controller command byte
      u8('outport'), // output port (reset line, A20)
      u8('writeCmd'), // controller command waiting for its byte at 0x60
      u8('ctrlPending'), // CTRL_*: a controller reply waits
      u8('ctrlData'), // that reply
      u8('obSource'), // SRC_*: source of the byte signalled by STAT_OBF
      u8('obData'), // last byte read from 0x60 (read again when nothing new is there)
      bool('kbdIrqLevel'), // levels driven on IRQ 1 and IRQ 12
      bool('auxIrqLevel'),
      // PS/2 keyboard
      array('kbdQueue', 'u8', KBD_RING),
      u8('kbdHead'),
      u8('kbdCount'),
      u8('kbdReplies'), // how many bytes at the head are replies to the last command
      u8('kbdWriteCmd'), // keyboard command waiting for its parameter byte
      bool('kbdScanEnabled'),
      u8('kbdScancodeSet'), // 1, 2 or 3
      u8('kbdLeds'),
      // PS/2 mouse
      array('auxQueue', 'u8', AUX_RING),
      u8('auxHead'),
      u8('auxCount'),
      u8('auxWriteCmd'), // mouse command waiting for its parameter byte
      u8('auxStatus'), // AUX_STATUS_* bits
      u8('auxResolution'),
      u8('auxSampleRate'),
      bool('auxWrap'),
      u8('auxType'), // 0 = PS/2, 3 = IMPS/2, 4 = IMEX
      u8('auxDetectState'), // progress through the IntelliMouse knock sequence
    ],
  } as const satisfies Descriptor,
  {
    // Both queues are rings indexed by head and count: out of range they would read and write past the ring.
    check(s) {
      within(s.kbdHead, KBD_RING - 1, 'kbdHead', `the keyboard ring holds ${KBD_RING} bytes`);
      within(s.kbdCount, KBD_RING, 'kbdCount', `the keyboard ring holds ${KBD_RING} bytes`);
      within(s.kbdReplies, s.kbdCount, 'kbdReplies', 'replies are bytes in the keyboard ring');
      within(s.auxHead, AUX_RING - 1, 'auxHead', `the mouse ring holds ${AUX_RING} bytes`);
      within(s.auxCount, AUX_RING, 'auxCount', `the mouse ring holds ${AUX_RING} bytes`);
    },
  },
);

export type I8042State = StateOf<typeof i8042State>;

export interface I8042Wiring {
  /** ISA IRQ 1. */
  readonly kbdIrq: IrqLine;
  /** ISA IRQ 12. */
  readonly auxIrq: IrqLine;
  /** Where the pulse-reset line goes. */
  readonly machine: MachineControl;
}

/**
 * The 8042. Port 0x60 is `dataPort`, port 0x64 is `commandPort` (two one-byte windows, so 0x61-0x63 stay free for
 * others; `regions()` lists both). The class itself is also an IoHandler with offset 0 = 0x60 and offset 4 = 0x64.
 * One instance per thread over the same record; every call runs under the machine lock.
 */
export class I8042 implements IoHandler {
  readonly dataPort: IoHandler;
  readonly commandPort: IoHandler;
  private readonly kbdIrq: IrqLine;
  private readonly auxIrq: IrqLine;
  private readonly machine: MachineControl;

  constructor(
    private readonly state: I8042State,
    wiring: I8042Wiring,
  ) {
    this.kbdIrq = wiring.kbdIrq;
    this.auxIrq = wiring.auxIrq;
    this.machine = wiring.machine;
    this.dataPort = {
      read: (_o, size) => this.read(OFFSET_DATA, size),
      write: (_o, size, v) => this.write(OFFSET_DATA, size, v),
    };
    this.commandPort = {
      read: (_o, size) => this.read(OFFSET_COMMAND, size),
      write: (_o, size, v) => this.write(OFFSET_COMMAND, size, v),
    };
  }

  /** Two one-byte windows, 0x60 and 0x64. */
  regions(): IoRegion[] {
    return [
      { name: 'i8042-data', space: 'pio', base: I8042_DATA_PORT, length: 1, handler: this.dataPort },
      { name: 'i8042-command', space: 'pio', base: I8042_COMMAND_PORT, length: 1, handler: this.commandPort },
    ];
  }

  /** Whether the guest has the A20 gate open (informational: KVM does not mask A20). */
  get a20Enabled(): boolean {
    return (this.state.outport & OUT_A20) !== 0;
  }

  read(offset: number, _size: AccessSize): number {
    if (offset === OFFSET_DATA) return this.readData();
    if (offset === OFFSET_COMMAND) return this.state.status;
    return 0xff;
  }

  write(offset: number, _size: AccessSize, value: number): void {
    if (offset === OFFSET_DATA) this.writeData(value & 0xff);
    else if (offset === OFFSET_COMMAND) this.writeCommand(value & 0xff);
  }

  /**
   * Host keyboard input: bytes exactly as the guest should read them from 0x60 (set 1 codes when the command
   * byte asks for translation — the usual PC setup — else codes of the keyboard's current set). Dropped while
   * the guest has scanning disabled or when 16 bytes already wait. Returns how many were accepted.
   */
  pushScancodes(bytes: ArrayLike<number>): number {
    const s = this.state;
    if (!s.kbdScanEnabled) return 0;
    let accepted = 0;
    for (let i = 0; i < bytes.length && s.kbdCount < PS2_QUEUE_SIZE; i++, accepted++) this.kbdAppend(bytes[i] & 0xff);
    if (accepted) this.updateIfIdle();
    return accepted;
  }

  /** Whether keyboard bytes reach the guest translated to set 1 (command byte bit 6). */
  get translating(): boolean {
    return (this.state.mode & MODE_KCC) !== 0;
  }

  /**
   * Power-on (and machine reset) state, as QEMU's kbd_reset plus the PS/2 devices' resets. The interrupt lines are
   * left to restored(), which the machine calls next.
   */
  reset(): void {
    const s = this.state;
    clearRecord(s);
    s.mode = MODE_KBD_INT | MODE_AUX_INT;
    s.status = STAT_CMD | STAT_UNLOCKED;
    s.outport = OUT_RESET | OUT_A20 | OUT_ONES;
    s.kbdScanEnabled = true;
    s.kbdScancodeSet = 2;
  }

  /** After a checkpoint restored the record: drive IRQ 1 and IRQ 12 to what the record says. */
  restored(): void {
    const s = this.state;
    const [kbd, aux] = this.lineLevels();
    s.kbdIrqLevel = kbd;
    s.auxIrqLevel = aux;
    this.kbdIrq.set(kbd);
    this.auxIrq.set(aux);
  }

  // ---- controller -------------------------------------------------------------------------------------------

  private writeCommand(cmd: number): void {
    const s = this.state;
    // 0xF0-0xFF pulse the output-port bits whose command bit is 0; only bit 0 (CPU reset) does anything.
    if ((cmd & CCMD_PULSE_BITS) === CCMD_PULSE_BITS) cmd = (cmd & OUT_RESET) === 0 ? CCMD_RESET : CCMD_NO_OP;
    switch (cmd) {
      case CCMD_READ_MODE:
        this.controllerReply(s.mode, CTRL_KBD);
        break;
      case CCMD_WRITE_MODE:
      case CCMD_WRITE_OUTPORT:
      case CCMD_WRITE_KBD_OBUF:
      case CCMD_WRITE_AUX_OBUF:
      case CCMD_WRITE_AUX:
        s.writeCmd = cmd;
        break;
      case CCMD_AUX_DISABLE:
        s.mode |= MODE_DISABLE_AUX;
        break;
      case CCMD_AUX_ENABLE:
        s.mode &= ~MODE_DISABLE_AUX;
        this.updateIfIdle();
        break;
      case CCMD_AUX_TEST:
        this.controllerReply(0x00, CTRL_KBD);
        break;
      case CCMD_SELF_TEST:
        s.status |= STAT_SELFTEST;
        this.controllerReply(0x55, CTRL_KBD);
        break;
      case CCMD_KBD_TEST:
        this.controllerReply(0x00, CTRL_KBD);
        break;
      case CCMD_KBD_DISABLE:
        s.mode |= MODE_DISABLE_KBD;
        break;
      case CCMD_KBD_ENABLE:
        s.mode &= ~MODE_DISABLE_KBD;
        this.updateIfIdle();
        break;
      case CCMD_READ_INPORT:
        this.controllerReply(0x80, CTRL_KBD);
        break;
      case CCMD_READ_OUTPORT:
        this.controllerReply(s.outport, CTRL_KBD);
        break;
      case CCMD_READ_TEST_INPUTS:
        this.controllerReply(0x00, CTRL_KBD);
        break;
      case CCMD_ENABLE_A20:
        s.outport |= OUT_A20;
        break;
      case CCMD_DISABLE_A20:
        s.outport &= ~OUT_A20;
        break;
      case CCMD_RESET:
        this.machine.reset('i8042 reset');
        break;
      default:
        break; // unsupported commands are ignored (QEMU logs them)
    }
  }

  private writeData(value: number): void {
    const s = this.state;
    const cmd = s.writeCmd;
    s.writeCmd = NO_PENDING_COMMAND;
    switch (cmd) {
      case NO_PENDING_COMMAND:
        this.kbdCommand(value);
        s.mode &= ~MODE_DISABLE_KBD; // talking to the keyboard re-enables its port
        this.updateIfIdle();
        break;
      case CCMD_WRITE_MODE:
        s.mode = value;
        this.driveLines(); // the interrupt enables act on the buffered byte at once
        this.updateIfIdle(); // re-enabled ports may have bytes waiting
        break;
      case CCMD_WRITE_KBD_OBUF:
        this.controllerReply(value, CTRL_KBD);
        break;
      case CCMD_WRITE_AUX_OBUF:
        this.controllerReply(value, CTRL_AUX);
        break;
      case CCMD_WRITE_OUTPORT:
        s.outport = value;
        if ((value & OUT_RESET) === 0) this.machine.reset('i8042 reset');
        break;
      case CCMD_WRITE_AUX:
        this.auxCommand(value);
        s.mode &= ~MODE_DISABLE_AUX; // talking to the mouse re-enables its port
        this.updateIfIdle();
        break;
      default:
        break;
    }
  }

  private readData(): number {
    const s = this.state;
    if (s.status & STAT_OBF) {
      s.status &= ~(STAT_OBF | STAT_AUX_OBF);
      s.outport &= ~(OUT_OBF | OUT_AUX_OBF);
      this.driveLines();
      switch (s.obSource) {
        case SRC_KBD:
          s.obData = this.kbdTake();
          break;
        case SRC_AUX:
          s.obData = this.auxTake();
          break;
        case SRC_CTRL:
          s.obData = s.ctrlData;
          s.ctrlPending = CTRL_NONE;
          break;
      }
      s.obSource = SRC_NONE;
      this.updateIfIdle();
    }
    return s.obData;
  }

  /** A reply from the controller itself: it goes ahead of device data (a newer reply replaces an unread one). */
  private controllerReply(value: number, as: typeof CTRL_KBD | typeof CTRL_AUX): void {
    const s = this.state;
    s.ctrlData = value;
    s.ctrlPending = as;
    this.updateIfIdle();
  }

  /** Fill an empty output buffer from the highest-priority source: controller, keyboard, then mouse. */
  private updateIfIdle(): void {
    const s = this.state;
    if (s.status & STAT_OBF) return; // the guest has not read the current byte yet
    let source = SRC_NONE;
    let fromAux = false;
    if (s.ctrlPending !== CTRL_NONE) {
      source = SRC_CTRL;
      fromAux = s.ctrlPending === CTRL_AUX;
    } else if (s.kbdCount > 0 && !(s.mode & MODE_DISABLE_KBD)) source = SRC_KBD;
    else if (s.auxCount > 0 && !(s.mode & MODE_DISABLE_AUX)) {
      source = SRC_AUX;
      fromAux = true;
    }
    if (source === SRC_NONE) return;
    s.obSource = source;
    s.status |= STAT_OBF | (fromAux ? STAT_AUX_OBF : 0);
    s.outport |= OUT_OBF | (fromAux ? OUT_AUX_OBF : 0);
    this.driveLines();
  }

  /** IRQ 1 while a keyboard-side byte waits and the command byte enables it; IRQ 12 likewise for the mouse. */
  private lineLevels(): [boolean, boolean] {
    const s = this.state;
    if (!(s.status & STAT_OBF)) return [false, false];
    if (s.status & STAT_AUX_OBF) return [false, (s.mode & MODE_AUX_INT) !== 0];
    return [(s.mode & MODE_KBD_INT) !== 0 && !(s.mode & MODE_DISABLE_KBD), false];
  }

  private driveLines(): void {
    const s = this.state;
    const [kbd, aux] = this.lineLevels();
    if (kbd !== s.kbdIrqLevel) {
      s.kbdIrqLevel = kbd;
      this.kbdIrq.set(kbd);
    }
    if (aux !== s.auxIrqLevel) {
      s.auxIrqLevel = aux;
      this.auxIrq.set(aux);
    }
  }

  // ---- PS/2 keyboard ----------------------------------------------------------------------------------------

  private kbdCommand(value: number): void {
    const s = this.state;
    this.kbdDropReplies(); // a new command discards unread replies to the previous one
    const pending = s.kbdWriteCmd;
    s.kbdWriteCmd = NO_PENDING_COMMAND;
    switch (pending) {
      case KBD_CMD_SCANCODE:
        if (value === 0)
          this.kbdReply(
            KBD_REPLY_ACK,
            this.translating ? (TRANSLATED_SET_NUMBER[s.kbdScancodeSet] ?? s.kbdScancodeSet) : s.kbdScancodeSet,
          );
        else if (value >= 1 && value <= 3) {
          s.kbdScancodeSet = value;
          this.kbdReply(KBD_REPLY_ACK);
        } else this.kbdReply(KBD_REPLY_RESEND);
        return;
      case KBD_CMD_SET_LEDS:
        s.kbdLeds = value;
        this.kbdReply(KBD_REPLY_ACK);
        return;
      case KBD_CMD_SET_RATE:
      case KBD_CMD_SET_MAKE_BREAK:
        this.kbdReply(KBD_REPLY_ACK);
        return;
    }
    switch (value) {
      case 0x00:
        this.kbdReply(KBD_REPLY_ACK);
        break; // QEMU's answers to these two stray bytes
      case 0x05:
        this.kbdReply(KBD_REPLY_RESEND);
        break;
      case KBD_CMD_GET_ID:
        this.kbdReply(KBD_REPLY_ACK, KBD_REPLY_ID, this.translating ? KBD_ID_TRANSLATED : KBD_ID_RAW);
        break;
      case KBD_CMD_ECHO:
        this.kbdReply(KBD_CMD_ECHO);
        break;
      case KBD_CMD_ENABLE:
        s.kbdScanEnabled = true;
        this.kbdReply(KBD_REPLY_ACK);
        break;
      case KBD_CMD_SCANCODE:
      case KBD_CMD_SET_LEDS:
      case KBD_CMD_SET_RATE:
      case KBD_CMD_SET_MAKE_BREAK:
        s.kbdWriteCmd = value;
        this.kbdReply(KBD_REPLY_ACK);
        break;
      case KBD_CMD_RESET_DISABLE:
        this.kbdReset();
        s.kbdScanEnabled = false;
        this.kbdReply(KBD_REPLY_ACK);
        break;
      case KBD_CMD_RESET_ENABLE:
        this.kbdReset();
        this.kbdReply(KBD_REPLY_ACK);
        break;
      case KBD_CMD_RESET:
        this.kbdReset();
        this.kbdReply(KBD_REPLY_ACK, KBD_REPLY_POR);
        break;
      case KBD_CMD_SET_TYPEMATIC:
        this.kbdReply(KBD_REPLY_ACK);
        break;
      default:
        this.kbdReply(KBD_REPLY_RESEND);
        break;
    }
  }

  private kbdReset(): void {
    const s = this.state;
    s.kbdScanEnabled = true;
    s.kbdScancodeSet = 2;
    s.kbdLeds = 0;
    s.kbdHead = 0;
    s.kbdCount = 0;
    s.kbdReplies = 0;
  }

  /** Put a command reply in front of any queued scan codes. */
  private kbdReply(...bytes: number[]): void {
    const s = this.state;
    let head = s.kbdHead;
    for (let i = bytes.length - 1; i >= 0; i--) {
      head = (head + KBD_RING - 1) % KBD_RING;
      s.kbdQueue[head] = bytes[i];
    }
    s.kbdHead = head;
    s.kbdCount += bytes.length;
    s.kbdReplies = bytes.length;
  }

  private kbdDropReplies(): void {
    const s = this.state;
    s.kbdHead = (s.kbdHead + s.kbdReplies) % KBD_RING;
    s.kbdCount -= s.kbdReplies;
    s.kbdReplies = 0;
  }

  private kbdAppend(byte: number): void {
    const s = this.state;
    s.kbdQueue[(s.kbdHead + s.kbdCount) % KBD_RING] = byte;
    s.kbdCount++;
  }

  /** The next keyboard byte; with nothing queued, the last one again (QEMU does this for EMM386). */
  private kbdTake(): number {
    const s = this.state;
    if (s.kbdCount === 0) return s.kbdQueue[(s.kbdHead + KBD_RING - 1) % KBD_RING];
    const byte = s.kbdQueue[s.kbdHead];
    s.kbdHead = (s.kbdHead + 1) % KBD_RING;
    s.kbdCount--;
    if (s.kbdReplies > 0) s.kbdReplies--;
    return byte;
  }

  // ---- PS/2 mouse -------------------------------------------------------------------------------------------

  private auxCommand(value: number): void {
    const s = this.state;
    const pending = s.auxWriteCmd;
    s.auxWriteCmd = NO_PENDING_COMMAND;
    if (pending === AUX_SET_SAMPLE) {
      s.auxSampleRate = value;
      this.auxDetectKnock(value);
      this.auxQueue(AUX_ACK);
      return;
    }
    if (pending === AUX_SET_RES) {
      s.auxResolution = value;
      this.auxQueue(AUX_ACK);
      return;
    }
    if (s.auxWrap) {
      // wrap mode echoes everything but "reset wrap" and "reset"
      if (value === AUX_RESET_WRAP) {
        s.auxWrap = false;
        this.auxQueue(AUX_ACK);
        return;
      }
      if (value !== AUX_RESET) {
        this.auxQueue(value);
        return;
      }
    }
    switch (value) {
      case AUX_SET_SCALE11:
        s.auxStatus &= ~AUX_STATUS_SCALE21;
        this.auxQueue(AUX_ACK);
        break;
      case AUX_SET_SCALE21:
        s.auxStatus |= AUX_STATUS_SCALE21;
        this.auxQueue(AUX_ACK);
        break;
      case AUX_SET_STREAM:
        s.auxStatus &= ~AUX_STATUS_REMOTE;
        this.auxQueue(AUX_ACK);
        break;
      case AUX_SET_WRAP:
        s.auxWrap = true;
        this.auxQueue(AUX_ACK);
        break;
      case AUX_SET_REMOTE:
        s.auxStatus |= AUX_STATUS_REMOTE;
        this.auxQueue(AUX_ACK);
        break;
      case AUX_GET_TYPE:
        this.auxQueue(AUX_ACK, s.auxType);
        break;
      case AUX_SET_RES:
      case AUX_SET_SAMPLE:
        s.auxWriteCmd = value;
        this.auxQueue(AUX_ACK);
        break;
      case AUX_GET_STATUS:
        this.auxQueue(AUX_ACK, s.auxStatus, s.auxResolution, s.auxSampleRate);
        break;
      case AUX_POLL:
        this.auxQueue(AUX_ACK);
        // No movement and no buttons: a packet of zeros (4 bytes for the wheel mice).
        if (s.auxType) this.auxQueue(AUX_PACKET_ALWAYS_ONE, 0, 0, 0);
        else this.auxQueue(AUX_PACKET_ALWAYS_ONE, 0, 0);
        break;
      case AUX_ENABLE_DEV:
        s.auxStatus |= AUX_STATUS_ENABLED;
        this.auxQueue(AUX_ACK);
        break;
      case AUX_DISABLE_DEV:
        s.auxStatus &= ~AUX_STATUS_ENABLED;
        this.auxQueue(AUX_ACK);
        break;
      case AUX_SET_DEFAULT:
        s.auxSampleRate = 100;
        s.auxResolution = 2;
        s.auxStatus = 0;
        this.auxQueue(AUX_ACK);
        break;
      case AUX_RESET:
        s.auxSampleRate = 100;
        s.auxResolution = 2;
        s.auxStatus = 0;
        s.auxType = 0;
        s.auxHead = 0;
        s.auxCount = 0;
        this.auxQueue(AUX_ACK, KBD_REPLY_POR, s.auxType);
        break;
      default:
        break; // QEMU's mouse does not answer unknown commands
    }
  }

  /** IntelliMouse detection: sample rates 200, 100, 80 select IMPS/2; 200, 200, 80 select IMEX. */
  private auxDetectKnock(rate: number): void {
    const s = this.state;
    switch (s.auxDetectState) {
      case 1:
        s.auxDetectState = rate === 100 ? 2 : rate === 200 ? 3 : 0;
        break;
      case 2:
        if (rate === 80) s.auxType = AUX_TYPE_IMPS2;
        s.auxDetectState = 0;
        break;
      case 3:
        if (rate === 80) s.auxType = AUX_TYPE_IMEX;
        s.auxDetectState = 0;
        break;
      default:
        s.auxDetectState = rate === 200 ? 1 : 0;
        break;
    }
  }

  /** Queue a reply from the mouse: all of it if it fits in the 16-byte buffer, else none (as QEMU). */
  private auxQueue(...bytes: number[]): void {
    const s = this.state;
    if (AUX_RING - s.auxCount < bytes.length) return;
    for (const b of bytes) {
      s.auxQueue[(s.auxHead + s.auxCount) % AUX_RING] = b;
      s.auxCount++;
    }
  }

  private auxTake(): number {
    const s = this.state;
    if (s.auxCount === 0) return s.auxQueue[(s.auxHead + AUX_RING - 1) % AUX_RING];
    const byte = s.auxQueue[s.auxHead];
    s.auxHead = (s.auxHead + 1) % AUX_RING;
    s.auxCount--;
    return byte;
  }
}

/** The device table's spec: the controller has nothing to configure. */
export interface I8042Spec {
  readonly kind: 'i8042';
  readonly id: string;
}

/** Always present, at 0x60/0x64 with IRQ 1 and 12, as on every PC. */
export const i8042Device = singleRecordDevice({
  kind: 'i8042',
  descriptor: i8042State,
  plan: (): I8042Spec[] => [{ kind: 'i8042', id: 'i8042' }],
  create: (state, env, _spec: I8042Spec) => {
    const dev = new I8042(state, {
      kbdIrq: env.irq(I8042_KBD_IRQ),
      auxIrq: env.irq(I8042_AUX_IRQ),
      machine: env.machine,
    });
    return { regions: dev.regions(), reset: () => dev.reset(), restored: () => dev.restored() };
  },
});
