#!/usr/bin/env node
// `node dist/src/images/initramfs-main.js ARGS` = `tsvmm initramfs ARGS`, for use before (or without) the bundled
// CLI: the same code, no VMM loaded.
import { initramfsMain } from './initramfs-cli.js';

process.exitCode = initramfsMain(process.argv.slice(2));
