#!/usr/bin/env node
// Runs the compiled CLI (npm run build, or npm start, compiles it).
const [major, minor] = process.versions.node.split('.').map(Number);
if (major < 24 || (major === 24 && minor < 9)) {
  // NOTE: on older Node, NestJS 12 (ESM only) and the engine's worker pool fail with errors that
  // do not say why; say it here instead.
  console.error(
    `herald: Node ${process.versions.node} is too old; Herald needs Node 24.9 or later.\n` +
      'Run it through npm (npm start, npx herald ...): the project brings Node 24 as a dev dependency.',
  );
  process.exit(1);
}
// kafkajs 2.2.4 arms a timer with a negative delay on Node 24 (tulios/kafkajs#1751, still open):
// harmless — Node waits 1 ms instead — but the warning would print at every start with Kafka.
const emitWarning = process.emitWarning;
process.emitWarning = (warning, ...rest) => {
  const type = typeof rest[0] === 'string' ? rest[0] : rest[0]?.type;
  if (type === 'TimeoutNegativeWarning' && String(warning).includes('is a negative number')) return;
  return emitWarning.call(process, warning, ...rest);
};
import('../dist/main.js').catch((error) => {
  if (error?.code === 'ERR_MODULE_NOT_FOUND' && String(error.message).includes('dist/main.js')) {
    console.error('herald: not built yet; run `npm run build` (npm start builds first).');
    process.exit(1);
  }
  throw error;
});
