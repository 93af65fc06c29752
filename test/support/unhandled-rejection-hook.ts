// Preloaded into a tsvmm under test (`node --import` this module, through NODE_OPTIONS): an unhandled rejection
// ends that tsvmm at once with UNHANDLED_REJECTION_STATUS and one line that says so, whatever tsvmm would have made of
// it, so a test sees it even where Node's default would only warn or tsvmm's exit would hide it.
export const UNHANDLED_REJECTION_STATUS = 97;
export const UNHANDLED_REJECTION_LINE = 'tsvmm under test: unhandled rejection:';

process.on('unhandledRejection', (reason) => {
  process.stderr.write(`${UNHANDLED_REJECTION_LINE} ${(reason as Error)?.stack ?? String(reason)}\n`);
  process.exit(UNHANDLED_REJECTION_STATUS);
});
