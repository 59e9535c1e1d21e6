// Path parameters: a zod schema each, checked by the route's validation pipe (see route.ts). A
// malformed id can name nothing, so a value the schema refuses is a 404 like an unknown one.
import { DomainError } from '@herald/control-plane';
import { z } from 'zod';

export interface PathParam {
  schema: z.ZodType;
  /** What the value names, for the 404: "Delivery 'x' does not exist." */
  names: string;
}

/** Any UUID, in either case (answered in lower case, as ids are stored). */
const UUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;

export const uuidParam = (names: string): PathParam => ({
  names,
  schema: z
    .string()
    .regex(UUID)
    .transform((value) => value.toLowerCase())
    .describe(`The ${names.toLowerCase()}'s id`),
});

export const deliveryIdParam = uuidParam('Delivery');
export const audienceIdParam = uuidParam('Audience');
export const confirmationIdParam = uuidParam('Confirmation');
export const occurrenceParam: PathParam = {
  names: 'Occurrence',
  schema: z.coerce.number().int().min(1).max(1_000_000_000).describe('The run of a recurring delivery: 1, 2, …'),
};

export function parsePathParam(param: PathParam, value: string): unknown {
  const result = param.schema.safeParse(value);
  if (!result.success) throw new DomainError('NOT_FOUND', `${param.names} '${value}' does not exist.`);
  return result.data;
}
