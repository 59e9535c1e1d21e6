// Path parameters: a malformed id can name nothing, so it is a 404 like an unknown one.
import type { PipeTransform } from '@nestjs/common';
import { DomainError } from '@herald/control-plane';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export class UuidPipe implements PipeTransform<string, string> {
  constructor(private readonly what: string) {}
  transform(value: string): string {
    if (!UUID.test(value)) throw new DomainError('NOT_FOUND', `${this.what} '${value}' does not exist.`);
    return value.toLowerCase();
  }
}

export class OccurrencePipe implements PipeTransform<string, number> {
  transform(value: string): number {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 1 || n > 1_000_000_000) throw new DomainError('NOT_FOUND', `Occurrence '${value}' does not exist.`);
    return n;
  }
}
