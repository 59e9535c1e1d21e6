// Audiences: lists of profiles, or attribute filters evaluated at preparation.
import { randomUUID } from 'node:crypto';
import type { Queryable } from '../database.js';
import { DomainError, notFound } from '../errors.js';
import type { Audience } from '../repositories/audiences.repository.js';
import type { CreateAudienceInput } from '../schemas.js';
import type { ControlPlaneContext } from './context.js';
import type { Actor } from './transitions.js';

export interface MembersResult {
  added: number;
  rejected: { index: number; code: string; message: string }[];
}

export class AudiencesService {
  constructor(private readonly ctx: ControlPlaneContext) {}

  async create(input: CreateAudienceInput, actor: Actor): Promise<{ audience: Audience; members: MembersResult }> {
    const id = randomUUID();
    const filter = 'filter' in input ? input.filter : null;
    const profileIds = 'profileIds' in input ? (input.profileIds ?? []) : [];
    const members = await this.ctx.db.transaction(async (tx) => {
      await this.ctx.audiences.insert(tx, { id, name: input.name, filter, createdBy: actor.id });
      return this.add(tx, id, profileIds);
    });
    return { audience: (await this.ctx.audiences.get(this.ctx.db, id))!, members };
  }

  async get(id: string): Promise<Audience> {
    const audience = await this.ctx.audiences.get(this.ctx.db, id);
    if (!audience) throw notFound('Audience', id);
    return audience;
  }

  /** Adds the known profiles; unknown ids are reported by index and the others still land. */
  async addMembers(id: string, profileIds: string[]): Promise<MembersResult> {
    const audience = await this.get(id);
    if (audience.filter) {
      throw new DomainError('INVALID_STATE', 'This audience is defined by a filter; members cannot be added to it.');
    }
    return this.ctx.db.transaction((tx) => this.add(tx, id, profileIds));
  }

  private async add(tx: Queryable, id: string, profileIds: string[]): Promise<MembersResult> {
    if (profileIds.length === 0) return { added: 0, rejected: [] };
    const missing = new Set(await this.ctx.profiles.missing(tx, profileIds));
    const added = await this.ctx.audiences.addMembers(tx, id, profileIds);
    const rejected = profileIds.flatMap((profileId, index) =>
      missing.has(profileId) ? [{ index, code: 'UNKNOWN_PROFILE', message: `No profile has id '${profileId}'.` }] : [],
    );
    return { added, rejected };
  }
}
