#!/usr/bin/env node
// The `herald` command: runs any role of the platform, prints tokens, applies migrations.
import { run } from './cli.js';

const code = await run(process.argv.slice(2));
// A command that failed may leave a store or a bus half open: exit now rather than wait on them.
if (code !== 0) process.exit(code);
