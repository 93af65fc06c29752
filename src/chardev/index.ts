// Host character backends: `-serial`/`-chardev` specs, the main-thread backend, and the any-thread output.
// A vCPU worker should import './char-out.js' alone (it needs nothing else).
export { openCharBackend } from './backend.js';
export type { CharBackend, CharBackendOptions } from './base.js';
export { openCharOut, SharedFdOut, OutputSlot, DEFAULT_STALL_LIMIT_MS, type CharOutTransfer } from './char-out.js';
export { parseCharSpec, charSpecFromChardev, CharSpecError, type CharSpec } from './spec.js';
export { EscapeFilter, CTRL_A, ESCAPE_HELP, type EscapeActions } from './escape.js';
export type { InputHandler } from './input.js';
