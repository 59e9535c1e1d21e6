// Waiting on a check without letting it hold up the caller: a store or broker that does not
// answer must not stop a readiness probe or a heartbeat.

/** Why `check` failed or did not settle within `ms`; undefined when it succeeded (or there is none). */
export async function failureOf(check: Promise<unknown> | undefined, ms: number): Promise<string | undefined> {
  if (check === undefined) return undefined;
  const settled = await withTimeout(
    check.then(
      () => ({ ok: true as const }),
      (error: unknown) => ({ ok: false as const, reason: error instanceof Error ? error.message : String(error) }),
    ),
    ms,
  );
  if (settled === undefined) return `no answer within ${ms} ms`;
  return settled.ok ? undefined : settled.reason;
}

/** The value, or undefined if it takes longer than `ms` (or fails). */
export async function withTimeout<T>(value: Promise<T> | T | undefined, ms: number): Promise<T | undefined> {
  if (value === undefined) return undefined;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), ms);
  });
  try {
    return await Promise.race([Promise.resolve(value).catch(() => undefined), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
