#!/usr/bin/env node
// The `herald` command: runs any role of the platform, prints tokens, applies migrations.
import { run } from './cli.js';

process.exitCode = await run(process.argv.slice(2));
