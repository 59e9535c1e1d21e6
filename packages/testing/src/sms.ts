// A generic JSON batch SMS provider on loopback, for the engine's HTTP sms channel.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface SmsProvider {
  /** The batch endpoint, for HTTP_PROVIDER_URL (the engine's worker option httpProviderUrl). */
  url: string;
  close(): Promise<void>;
}

export interface SmsMessage {
  id: string;
  to: string;
  text: string;
}

/** Answers each POST of `{ messages }` with 200 and the body `answer` writes for those messages. */
export async function startSmsProvider(answer: (messages: SmsMessage[]) => string, path = '/v1/sms'): Promise<SmsProvider> {
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (chunk) => {
      body += chunk;
    });
    req.on('end', () => {
      res.setHeader('content-type', 'application/json');
      res.end(answer((JSON.parse(body) as { messages: SmsMessage[] }).messages));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}${path}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
