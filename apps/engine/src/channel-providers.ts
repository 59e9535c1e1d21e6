// What an engine can send and through what, as it registers in engine_instances: Confirm send
// refuses a channel no live engine can send (409 CHANNEL_NOT_CONFIGURED) and names the provider
// it will use. Credentials never leave the engine: user, password and query values are redacted.
import type { ChannelProvider } from '@herald/control-plane';
import type { WorkerSettings } from './send-task.js';

/** The channels of an engine with these settings; `captureSink`: its SMTP URL is the capture sink's. */
export function channelProviders(worker: Pick<WorkerSettings, 'smtpUrl' | 'httpProviderUrl'>, options: { captureSink?: boolean } = {}): ChannelProvider[] {
  const smtp = new URL(worker.smtpUrl);
  const providers: ChannelProvider[] = [
    {
      channel: 'email',
      kind: options.captureSink ? 'capture-sink' : 'smtp',
      host: smtp.hostname.replace(/^\[(.*)\]$/, '$1'),
      port: Number(smtp.port) || (smtp.protocol === 'smtps:' ? 465 : 587),
      url: redactUrl(worker.smtpUrl),
    },
  ];
  if (worker.httpProviderUrl) providers.push({ channel: 'sms', kind: 'http', url: redactUrl(worker.httpProviderUrl) });
  return providers;
}

/** The URL with its user, password and every query value replaced by ***. */
export function redactUrl(text: string): string {
  const url = new URL(text);
  const userinfo = url.username || url.password ? `***${url.password ? ':***' : ''}@` : '';
  const query = [...url.searchParams.keys()].map((key) => `${encodeURIComponent(key)}=***`).join('&');
  return `${url.protocol}//${userinfo}${url.host}${url.pathname}${query ? `?${query}` : ''}`;
}
