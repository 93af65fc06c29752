// The start-up probe: tsvmm's `run` path (src/cli/main.ts) step by step, with a wall-clock mark after each step, so
// bench/startup can split start-up into phases. It does what main.ts does, in the same order, with the same lazy
// import of the machine; it prints one JSON line of marks (CLOCK_REALTIME ns, from performance.timeOrigin + now(),
// so that loading the FFI to read the clock does not move work between phases) and exits with the guest's status.
//   usage: node dist/bench/startup/probe.js [tsvmm run options]
const mark = (): number => Math.round((performance.timeOrigin + performance.now()) * 1e6);
const marks: Record<string, number> = { nodeOrigin: Math.round(performance.timeOrigin * 1e6), scriptStart: mark() };

const { parseRunArgs } = await import('../../src/cli/args.js');
const { machineConfigFromArgs } = await import('../../src/cli/config.js');
marks.cliLoaded = mark();
const config = machineConfigFromArgs(parseRunArgs(process.argv.slice(2)));
marks.configured = mark();
const { Machine } = await import('../../src/machine/machine.js');
marks.machineLoaded = mark();
const machine = await Machine.create(config);
marks.created = mark();
machine.start();
marks.started = mark();
const status = await machine.finished;
marks.finished = mark();
process.stdout.write(`${JSON.stringify(marks)}\n`);
process.exit(status);
