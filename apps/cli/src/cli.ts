// The `herald` command: dispatches a command line to its command and turns what went wrong into
// an exit code (2: a usage or configuration error, or a start refused; 1: anything else).
// `herald start` runs every role in one process on the embedded defaults (PGlite, in-process
// bus); `herald gateway` and `herald engine` one role each (roles.ts composes them).
import { ConfigError, loadConfig } from '@herald/config';
import { PlatformSettingsError } from '@herald/control-plane';
import { commandList, commandUsage, isCommand, type ParsedCommand, parseCommand, UsageError } from './commands.js';
import { dlqCommand } from './dlq-replay.js';
import { gatewayModule } from './gateway-module.js';
import { StartRefusedError } from './kpi-store-lock.js';
import { migrateCommand } from './migrate-command.js';
import { serve } from './roles.js';
import { tokenCommand } from './token-command.js';

const usage = async () => `Usage: herald <command> [options]   (herald <command> --help for one command)

Commands:
${commandList()}

Environment: HERALD_HOME (default ./.herald), PORT (8080), DATABASE_URL (PostgreSQL; PGlite when unset),
HERALD_JWT_SECRET, CONFIRMATION_TTL (10m), SCHEDULE_STALENESS (1h). See docs/configuration.md for all of them.
Roles: ${(await gatewayModule()).ROLES.join(', ')}`;

export async function run(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === 'help' || command === '--help' || command === '-h') {
    console.log(await usage());
    return command === undefined ? 1 : 0;
  }
  if (!isCommand(command)) {
    console.error(`herald: unknown command '${command}'\n\n${await usage()}`);
    return 2;
  }
  try {
    const parsed = parseCommand(command, rest);
    if (parsed === 'help') {
      console.log(commandUsage(command));
      return 0;
    }
    switch (command) {
      case 'start':
        return await serve(loadConfig(), 'all', startOptions(parsed));
      case 'gateway':
        return await serve(loadConfig(), 'gateway');
      case 'engine':
        return await serve(loadConfig(), 'engine');
      case 'token':
        return await tokenCommand(loadConfig(), parsed);
      case 'migrate':
        return await migrateCommand(loadConfig());
      case 'dlq':
        return await dlqCommand(loadConfig(), parsed);
    }
  } catch (error) {
    if (error instanceof UsageError) {
      console.error(`herald ${command}: ${error.message}${error.command ? `\n\n${commandUsage(error.command)}` : ''}`);
      return 2;
    }
    if (error instanceof ConfigError || error instanceof PlatformSettingsError || error instanceof StartRefusedError) {
      console.error(`herald: ${error.message}`);
      return 2;
    }
    const { code, address, port } = error as { code?: string; address?: string; port?: number };
    if (code === 'EADDRINUSE') {
      console.error(`herald: ${address}:${port} is already in use; set PORT to a free port (or 0 for any free one).`);
      return 1;
    }
    throw error;
  }
}

function startOptions({ values }: ParsedCommand): { engines: number } {
  const engines = values.engines === undefined ? 0 : Number(values.engines);
  if (!Number.isInteger(engines) || engines < 0 || engines > 64) throw new UsageError(`--engines takes a whole number from 0 to 64, not '${values.engines}'`, 'start');
  return { engines };
}
