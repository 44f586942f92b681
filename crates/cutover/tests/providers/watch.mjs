// Watches flags with the official OpenFeature OFREP web provider (npm @openfeature/ofrep-web-provider),
// in Node with the `eventsource` package as the global EventSource, as in a browser: it can send
// no headers on the change stream, so it relies on the URL the server advertises.
//
// Usage: node watch.mjs BASE_URL TOKEN FLAG
// Prints one JSON line {"event": "ready", "value"} once the provider is ready, then one line
// {"event": "changed", "value", "flags"} per ConfigurationChanged event. Ends when stdin closes.
import { EventSource } from 'eventsource';
import { OpenFeature, ProviderEvents } from '@openfeature/web-sdk';
import { OFREPWebProvider } from '@openfeature/ofrep-web-provider';

globalThis.EventSource = EventSource;
const [baseUrl, token, flag] = process.argv.slice(2);
const print = (line) => process.stdout.write(`${JSON.stringify(line)}\n`);

// Polling off: a change can only arrive through the stream.
const provider = new OFREPWebProvider({ baseUrl, headers: [['Authorization', `Bearer ${token}`]], pollInterval: 0 });
await OpenFeature.setContext({ targetingKey: 'user-1' });
await OpenFeature.setProviderAndWait(provider);
const client = OpenFeature.getClient();
client.addHandler(ProviderEvents.ConfigurationChanged, (details) => {
  print({ event: 'changed', value: client.getStringValue(flag, 'fallback'), flags: details?.flagsChanged ?? [] });
});
print({ event: 'ready', value: client.getStringValue(flag, 'fallback') });
process.stdin.resume();
process.stdin.on('end', async () => {
  await OpenFeature.close();
  process.exit(0);
});
