// Bounce rules: their validation (parseRules, validateRules), how an address matches one, and the
// rule book that decides how the sink answers a recipient, including the per-(rule, address)
// `times` budget that turns a rule into a greylist.
import { z } from 'zod';

export interface SinkRule {
  /** Exact address (case-insensitive), '*@domain', or a /regex/ source string like '/^bounce-/'. */
  match: string;
  /** When to answer: at RCPT TO (a per-recipient refusal) or after DATA (the whole message). Default 'rcpt' ('data' for 'hang'). */
  stage?: 'rcpt' | 'data';
  /** SMTP reply code: 4xx (temporary) or 5xx (permanent); or 'hang' = after DATA never answer (client times out). */
  code: number | 'hang';
  message?: string;
  /** Answer this way only the first N times per address, then accept (e.g. a 451 greylist). Default: always. */
  times?: number;
}

export type Stage = 'rcpt' | 'data';

/** A rule once validated: the stage is always spelled out. */
export type ValidRule = SinkRule & { stage: Stage };

/** How the sink answers one recipient (rcpt stage) or one message (data stage). */
export interface Decision {
  code: number | 'hang';
  message: string;
  rule: ValidRule;
}

/** Why a `match` string is not one of the three accepted forms, or null when it is. */
function matchProblem(match: string): string | null {
  if (match.startsWith('/')) {
    if (match.length < 3 || !match.endsWith('/')) {
      return "a regex is written '/source/' without flags (matching is always case-insensitive)";
    }
    try {
      new RegExp(match.slice(1, -1), 'i');
    } catch (error) {
      return `invalid regex: ${(error as Error).message}`;
    }
    return null;
  }
  if (/\s/.test(match)) return 'must not contain whitespace';
  if (match.startsWith('*@')) {
    const domain = match.slice(2);
    if (domain === '' || domain.includes('@') || domain.includes('*')) {
      return "'*@domain' needs one plain domain after '*@' (use a /regex/ for anything fancier)";
    }
    return null;
  }
  if (match.includes('*')) return "the only wildcard form is '*@domain' (use a /regex/ for anything fancier)";
  const at = match.lastIndexOf('@');
  if (at <= 0 || at === match.length - 1) return "must be an address (local@domain), '*@domain' or '/regex/'";
  return null;
}

const ruleSchema = z
  .strictObject({
    match: z.string().superRefine((match, ctx) => {
      const problem = matchProblem(match);
      if (problem) ctx.addIssue({ code: 'custom', message: `${JSON.stringify(match)}: ${problem}` });
    }),
    stage: z.enum(['rcpt', 'data'], { error: "stage must be 'rcpt' or 'data'" }).optional(),
    code: z.custom<number | 'hang'>(
      (code) => code === 'hang' || (typeof code === 'number' && Number.isInteger(code) && code >= 400 && code <= 599),
      { error: "code must be an SMTP reply code from 400 to 599, or 'hang'" },
    ),
    message: z
      .string()
      .refine((message) => !/[\r\n]/.test(message), 'message must be a single line (no CR or LF)')
      .optional(),
    times: z.number({ error: 'times must be a positive integer' }).int().positive().optional(),
  })
  .superRefine((rule, ctx) => {
    // 'hang' withholds the reply to the end of DATA; at RCPT TO there is nothing to withhold.
    if (rule.code === 'hang' && rule.stage === 'rcpt') {
      ctx.addIssue({ code: 'custom', path: ['stage'], message: "code 'hang' only exists at stage 'data'" });
    }
  })
  .transform((rule): ValidRule => ({ ...rule, stage: rule.stage ?? (rule.code === 'hang' ? 'data' : 'rcpt') }));

const rulesSchema = z.array(ruleSchema, { error: 'rules must be a JSON array of rule objects' });

function describeIssues(issues: readonly z.core.$ZodIssue[], source: string): string {
  const lines = issues.map((issue) => {
    const path = issue.path.map((key) => (typeof key === 'number' ? `[${key}]` : `.${String(key)}`)).join('');
    return `  - rules${path}: ${issue.message}`;
  });
  return `invalid capture-sink rules${source}:\n${lines.join('\n')}`;
}

/** Validates rules given as values (options.rules, setRules); throws an Error listing every problem. */
export function validateRules(rules: unknown, source = ''): ValidRule[] {
  const result = rulesSchema.safeParse(rules);
  if (!result.success) throw new Error(describeIssues(result.error.issues, source));
  return result.data;
}

/** Parses and validates a JSON array of rules; throws an Error listing every problem. */
export function parseRules(json: string, source = ''): SinkRule[] {
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch (error) {
    throw new Error(`invalid capture-sink rules${source}: not JSON (${(error as Error).message})`);
  }
  return validateRules(value, source);
}

/** A predicate on a lower-cased address. */
export function compileMatch(match: string): (address: string) => boolean {
  if (match.startsWith('/')) {
    const regex = new RegExp(match.slice(1, -1), 'i');
    return (address) => regex.test(address);
  }
  if (match.startsWith('*@')) {
    const domain = match.slice(2).toLowerCase();
    return (address) => address.slice(address.lastIndexOf('@') + 1) === domain;
  }
  const exact = match.toLowerCase();
  return (address) => address === exact;
}

function defaultMessage(rule: ValidRule, address: string): string {
  const kind = typeof rule.code === 'number' && rule.code < 500 ? 'deferred' : 'refused';
  const what = rule.stage === 'rcpt' ? `Recipient ${address}` : `Message for ${address}`;
  return `${what} ${kind} by capture-sink rule ${rule.match}`;
}

interface CompiledRule {
  rule: ValidRule;
  /** Identifies the rule across reloads, so an unchanged rule keeps its `times` counters. */
  key: string;
  matches: (address: string) => boolean;
}

/**
 * The rules in force and what each has already answered. Rules set in code come first, then the
 * rules file's; the first rule that matches and still has `times` left decides. An exhausted rule
 * falls through to later rules (so '451 times 2' then '550' greylists, then bounces).
 */
export class RuleBook {
  private ownRules: CompiledRule[] = [];
  private fileRules: CompiledRule[] = [];
  /** rule key → lower-cased address → how many times the rule answered it. */
  private counters = new Map<string, Map<string, number>>();

  setRules(rules: readonly SinkRule[]): void {
    this.ownRules = validateRules(rules).map(compile);
    this.pruneCounters();
  }

  setFileRules(rules: readonly SinkRule[]): void {
    this.fileRules = validateRules(rules).map(compile);
    this.pruneCounters();
  }

  /** How to answer `address` at `stage`, or null to accept. Counts the answer against `times`. */
  decide(stage: Stage, address: string): Decision | null {
    const lower = address.toLowerCase();
    for (const compiled of [...this.ownRules, ...this.fileRules]) {
      const { rule } = compiled;
      if (rule.stage !== stage || !compiled.matches(lower)) continue;
      if (rule.times !== undefined) {
        let perAddress = this.counters.get(compiled.key);
        if (!perAddress) {
          perAddress = new Map();
          this.counters.set(compiled.key, perAddress);
        }
        const used = perAddress.get(lower) ?? 0;
        if (used >= rule.times) continue;
        perAddress.set(lower, used + 1);
      }
      return { code: rule.code, message: rule.message ?? defaultMessage(rule, address), rule };
    }
    return null;
  }

  private pruneCounters(): void {
    const live = new Set([...this.ownRules, ...this.fileRules].map((compiled) => compiled.key));
    for (const key of this.counters.keys()) if (!live.has(key)) this.counters.delete(key);
  }
}

function compile(rule: ValidRule): CompiledRule {
  const key = JSON.stringify([rule.match, rule.stage, rule.code, rule.message ?? null, rule.times ?? null]);
  return { rule, key, matches: compileMatch(rule.match) };
}
