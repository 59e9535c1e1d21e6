import { channelProviders, redactUrl } from './channel-providers.js';

describe('channel providers', () => {
  it('redacts user, password and query values, and keeps where the messages go', () => {
    expect(redactUrl('smtp://news:s3cret@mta.example:587')).toBe('smtp://***:***@mta.example:587');
    expect(redactUrl('https://api.sms.example/v1/batch?api_key=s3cret&region=eu')).toBe('https://api.sms.example/v1/batch?api_key=***&region=***');
    expect(redactUrl('smtp://127.0.0.1:2525')).toBe('smtp://127.0.0.1:2525');
    expect(redactUrl('https://user@sms.example/send')).toBe('https://***@sms.example/send');
  });

  it('lists email always, and sms only with a provider', () => {
    expect(channelProviders({ smtpUrl: 'smtps://u:p@mta.example' })).toEqual([
      { channel: 'email', kind: 'smtp', host: 'mta.example', port: 465, url: 'smtps://***:***@mta.example' },
    ]);
    expect(channelProviders({ smtpUrl: 'smtp://127.0.0.1:2525', httpProviderUrl: 'https://sms.example/v1?token=t' }, { captureSink: true })).toEqual([
      { channel: 'email', kind: 'capture-sink', host: '127.0.0.1', port: 2525, url: 'smtp://127.0.0.1:2525' },
      { channel: 'sms', kind: 'http', url: 'https://sms.example/v1?token=***' },
    ]);
  });
});
