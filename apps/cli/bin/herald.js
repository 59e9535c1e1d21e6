#!/usr/bin/env node
// Runs the compiled CLI (npm run build, or npm start, compiles it).
import('../dist/main.js').catch((error) => {
  if (error?.code === 'ERR_MODULE_NOT_FOUND' && String(error.message).includes('dist/main.js')) {
    console.error('herald: not built yet; run `npm run build` (npm start builds first).');
    process.exit(1);
  }
  throw error;
});
