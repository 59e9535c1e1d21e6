// The herald command's subcommands: their usage text and options, and one parser that turns
// --help into the usage and a mistyped option into a usage error (never a stack trace).
import { type ParseArgsOptionsConfig, parseArgs } from 'node:util';

export type CommandName = 'start' | 'gateway' | 'engine' | 'dlq' | 'token' | 'migrate';

interface CommandSpec {
  /** The synopsis after `herald `, e.g. `token --user U --roles R1,R2`. */
  synopsis: string;
  /** What it does, one or a few lines. */
  summary: string;
  options: ParseArgsOptionsConfig;
  /** Names of the positional arguments it takes (none by default). */
  positionals?: string[];
}

export const COMMANDS: Record<CommandName, CommandSpec> = {
  start: {
    synopsis: 'start [--engines N]',
    summary:
      'run every role in one process (embedded defaults: PGlite, in-process bus,\n' +
      'and an SMTP capture sink when SMTP_URL is unset); with --engines N, the\n' +
      'send engine runs as N `herald engine` processes beside it (needs\n' +
      'KAFKA_BROKERS and DATABASE_URL)',
    options: { engines: { type: 'string' } },
  },
  gateway: { synopsis: 'gateway', summary: 'run the gateway (API, scheduler, outbox relay, KPI consumer) alone', options: {} },
  engine: {
    synopsis: 'engine',
    summary:
      'run the send engine alone (needs DATABASE_URL: PGlite is one process);\n' +
      'serves /health/* and /metrics on PORT',
    options: {},
  },
  dlq: {
    synopsis: 'dlq replay <topic> [--limit N]',
    summary: 'publish the messages of <topic>.dlq to <topic> again (Kafka only),\ne.g. herald dlq replay herald.message-events',
    options: { limit: { type: 'string' } },
    positionals: ['action', 'topic'],
  },
  token: {
    synopsis: 'token --user U --roles R1,R2 [--name N] [--expires 30d]',
    summary: "print a bearer token signed with this platform's secret",
    options: { user: { type: 'string' }, roles: { type: 'string' }, name: { type: 'string' }, expires: { type: 'string', default: '30d' } },
  },
  migrate: { synopsis: 'migrate', summary: 'apply the control-plane migrations and exit', options: {} },
};

export function isCommand(name: string | undefined): name is CommandName {
  return name !== undefined && Object.hasOwn(COMMANDS, name);
}

/** A command line that does not fit its command: reported with the command's usage, exit code 2. */
export class UsageError extends Error {
  constructor(
    message: string,
    readonly command?: CommandName,
  ) {
    super(message);
    this.name = 'UsageError';
  }
}

export function commandUsage(name: CommandName): string {
  const spec = COMMANDS[name];
  return `Usage: herald ${spec.synopsis}\n\n${spec.summary}\n\nEnvironment: see \`herald help\` and docs/configuration.md.`;
}

export function commandList(): string {
  const width = 30;
  return Object.values(COMMANDS)
    .map(({ synopsis, summary }) => {
      const lines = summary.split('\n');
      const first = synopsis.length < width - 2 ? `  ${synopsis.padEnd(width - 2)}${lines.shift()}` : `  ${synopsis}`;
      return [first, ...lines.map((line) => `${' '.repeat(width)}${line}`)].join('\n');
    })
    .join('\n');
}

export interface ParsedCommand {
  values: Record<string, string | boolean | undefined>;
  positionals: string[];
}

/**
 * The command's options and positionals, or 'help' for --help / -h. Unknown options, missing
 * values and extra arguments throw a UsageError naming them.
 */
export function parseCommand(name: CommandName, args: string[]): ParsedCommand | 'help' {
  const spec = COMMANDS[name];
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args, options: { ...spec.options, help: { type: 'boolean', short: 'h' } }, allowPositionals: true, strict: true });
  } catch (error) {
    throw new UsageError(parseArgsMessage(error), name);
  }
  if (parsed.values.help) return 'help';
  const allowed = spec.positionals?.length ?? 0;
  if (parsed.positionals.length > allowed) throw new UsageError(`unexpected argument '${parsed.positionals[allowed]}'`, name);
  return { values: parsed.values as ParsedCommand['values'], positionals: parsed.positionals };
}

/** node:util parseArgs errors, said shortly (its own messages run on about '--' and positionals). */
function parseArgsMessage(error: unknown): string {
  const { code, message } = error as { code?: string; message?: string };
  const option = /'(-[^' ]+)/.exec(message ?? '')?.[1];
  if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' && option) return `unknown option '${option}'`;
  if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' && option && message?.includes('argument missing')) return `option '${option}' needs a value`;
  if (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS')) return message ?? code;
  throw error;
}
