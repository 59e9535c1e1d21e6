// What a recipient's link records through the control-plane store: an unsubscribe (the profile's
// status and its event, together), and the opens and clicks of links rendered before tokens
// carried their Message-ID (resolved through the ledger: only for a message Herald sent, else
// NOT_FOUND, nothing recorded). Opens and clicks of current tokens never come here: the gateway
// publishes them from the token alone, and hands this service an event only when the bus refused
// it (recordEvent: the outbox keeps it). The links are fixed with the content: a delivery's at
// preparation, a proof's when the engine renders it. The caller has verified the link's
// signature: this service takes the payload it carried.
import { randomUUID } from 'node:crypto';
import { type MessageEvent, messageEventKey, TOPICS } from '@herald/contracts';
import type { Queryable } from '../database.js';
import { DomainError } from '../errors.js';
import type { ControlPlaneContext } from './context.js';

/** The message a tracking link belongs to (a verified token's payload). */
export interface TrackedMessage {
  deliveryId: string;
  occurrence: number;
  profileId: string;
  /** The index of the link in the content, for a click. */
  link?: number;
  /** Set on a proof's links: they resolve against the proof's own links and record nothing. */
  proof?: string;
  /** The Message-ID the token carried (tokens rendered since it is carried): no ledger lookup is needed. */
  messageId?: string;
}

export interface Interaction {
  /** The request came from a link scanner or a script, not a person (the KPIs count it apart). */
  machine: boolean;
}

export class TrackingService {
  constructor(private readonly ctx: ControlPlaneContext) {}

  /** The URL a click redirects to: the one stored for that link (a proof's, for a proof); undefined when there is none. */
  async clickTarget(message: TrackedMessage): Promise<string | undefined> {
    const index = message.link ?? -1;
    return message.proof
      ? this.ctx.sendQueue.proofLink(this.ctx.db, { proofId: message.proof, deliveryId: message.deliveryId }, index)
      : this.ctx.sendQueue.link(this.ctx.db, message.deliveryId, index);
  }

  /** Records an open or a click (with the URL it went to) of a message Herald sent. */
  async record(message: TrackedMessage, type: 'opened' | 'clicked', interaction: Interaction & { url?: string }): Promise<void> {
    await this.ctx.db.transaction((tx) => this.recordIn(tx, message, type, interaction));
  }

  /**
   * Keeps an open or a click the gateway built from its token but could not publish (the bus
   * refused it): the outbox relay publishes it later, under the same event id.
   */
  async recordEvent(event: MessageEvent): Promise<void> {
    await this.ctx.outbox.enqueue(this.ctx.db, { commandId: event.eventId, topic: TOPICS.messageEvents, key: messageEventKey(event), payload: event });
  }

  /** One-click unsubscribe: the profile is unsubscribed and the event recorded, together. */
  async unsubscribe(message: TrackedMessage, interaction: Interaction): Promise<void> {
    await this.ctx.db.transaction(async (tx) => {
      await this.ctx.profiles.setStatus(tx, message.profileId, 'unsubscribed');
      await this.recordIn(tx, message, 'unsubscribed', interaction);
    });
  }

  /** Keeps the links of a proof as its content had them when rendered (a proof is sent once: kept as first written). */
  async saveProofLinks(proof: { proofId: string; deliveryId: string }, links: string[]): Promise<void> {
    await this.ctx.sendQueue.saveProofLinks(this.ctx.db, proof, links);
  }

  private async recordIn(tx: Queryable, message: TrackedMessage, type: MessageEvent['type'], interaction: Interaction & { url?: string }) {
    // A token that carries its Message-ID is an email's (only emails have links): the ledger row
    // may be gone (retention), the event needs nothing from it.
    const sent = message.messageId ? { messageId: message.messageId, channel: 'email' as const } : await this.ctx.ledger.sentMessage(tx, message);
    if (!sent) throw new DomainError('NOT_FOUND', 'This link is not valid.');
    const event: MessageEvent = {
      eventId: randomUUID(),
      type,
      deliveryId: message.deliveryId,
      occurrence: message.occurrence,
      messageId: sent.messageId ?? `${message.deliveryId}.${message.occurrence}.${message.profileId}`,
      profileId: message.profileId,
      channel: sent.channel,
      occurredAt: this.ctx.clock.now().toISOString(),
      ...(interaction.url ? { url: interaction.url } : {}),
      machine: interaction.machine,
    };
    await this.ctx.outbox.enqueue(tx, { commandId: event.eventId, topic: TOPICS.messageEvents, key: messageEventKey(event), payload: event });
  }
}
