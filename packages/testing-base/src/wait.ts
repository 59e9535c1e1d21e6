// Waiting in tests: poll for the effect with a deadline (eventually), never sleep a fixed time.
// holdFor is the one exception, for a test whose scenario is itself a span of time.

export interface WaitOptions {
  /** How long to wait at most; default 10 s. */
  timeoutMs?: number;
  /** The pause between two probes; default 20 ms. */
  intervalMs?: number;
  /**
   * What is awaited, for the message on a timeout ("Timed out after 10000 ms waiting for <what>");
   * a function is asked at the timeout (to say what was seen last).
   */
  what?: string | (() => string);
}

/**
 * Probes until the probe answers something other than `undefined` or `false`, and returns that
 * answer; a probe that throws counts as "not yet". Past the deadline it fails, saying what it
 * waited for and the probe's last error.
 */
export async function eventually<T>(probe: () => Promise<T | undefined | false> | T | undefined | false, options: WaitOptions = {}): Promise<T> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined && value !== false) return value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) {
      const what = typeof options.what === 'function' ? options.what() : (options.what ?? 'a condition');
      throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    }
    await new Promise((resolve) => setTimeout(resolve, options.intervalMs ?? 20));
  }
}

/**
 * Lets `ms` pass. Only where the span of time is the scenario itself (e.g. a broker kept down
 * for 30 s while the platform runs): `why` names it, at the call site. Waiting for an effect,
 * or for proof that something did not happen, is `eventually` on a positive signal.
 */
export async function holdFor(ms: number, why: string): Promise<void> {
  if (process.env.HERALD_TEST_LOG) process.stderr.write(`holding ${ms} ms: ${why}\n`);
  await new Promise((resolve) => setTimeout(resolve, ms));
}

/** A promise that stays pending until `release` is called: holds a handler (or a fake) where a test wants it held. */
export function gate(): { promise: Promise<void>; release: () => void } {
  let release!: () => void;
  const promise = new Promise<void>((resolve) => {
    release = resolve;
  });
  return { promise, release };
}
