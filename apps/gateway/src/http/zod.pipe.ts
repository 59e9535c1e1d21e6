// Validation at the boundary, once: a zod schema per body or query; strict objects reject
// unknown fields. Failures are 400 INVALID_INPUT with every issue's path and reason.
import type { PipeTransform } from '@nestjs/common';
import { DomainError } from '@herald/control-plane';
import type { z } from 'zod';

export class ZodPipe<S extends z.ZodType> implements PipeTransform<unknown, z.output<S>> {
  constructor(
    private readonly schema: S,
    private readonly where: 'body' | 'query' = 'body',
  ) {}

  transform(value: unknown): z.output<S> {
    const result = this.schema.safeParse(value);
    if (result.success) return result.data;
    // Body fields are named as they are written (`content.from`); query parameters as `query.<param>`.
    const root = this.where === 'query' ? ['query'] : [];
    throw new DomainError('INVALID_INPUT', `The request ${this.where} is not valid.`, { issues: zodIssues(result.error, root) });
  }
}

export function zodIssues(error: z.ZodError, root: PropertyKey[] = []): { path: string; message: string }[] {
  const named = (path: PropertyKey[]) => [...root, ...path].map(String).join('.') || '(body)';
  return error.issues.flatMap((issue) => {
    // Unions report one branch per alternative: surface the branch issues with their paths.
    if (issue.code === 'invalid_union' && 'errors' in issue && Array.isArray(issue.errors) && issue.errors.length > 0) {
      const best = [...issue.errors].sort((a, b) => a.length - b.length)[0]!;
      return best.map((inner) => ({ path: named([...issue.path, ...inner.path]), message: inner.message }));
    }
    const keys = issue.code === 'unrecognized_keys' ? `: ${issue.keys.join(', ')}` : '';
    return [{ path: named(issue.path), message: `${issue.message}${keys}` }];
  });
}
