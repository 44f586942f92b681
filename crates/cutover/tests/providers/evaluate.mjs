// Evaluates flags with the official OpenFeature OFREP provider (npm @openfeature/ofrep-provider).
//
// Usage: node evaluate.mjs BASE_URL TOKEN SPEC_JSON
// SPEC_JSON is a list of {"flag", "type": "string"|"object"|"boolean"|"float", "default"}.
// Prints a JSON list of {"flag", "value", "variant", "reason", "error_code"}.
import { OpenFeature } from '@openfeature/server-sdk';
import { OFREPProvider } from '@openfeature/ofrep-provider';

const [baseUrl, token, specJson] = process.argv.slice(2);
const spec = JSON.parse(specJson);
await OpenFeature.setProviderAndWait(new OFREPProvider({ baseUrl, headers: [['Authorization', `Bearer ${token}`]] }));
const client = OpenFeature.getClient();
const context = { targetingKey: 'user-1' };
const evaluate = {
  string: (flag, def) => client.getStringDetails(flag, def, context),
  object: (flag, def) => client.getObjectDetails(flag, def, context),
  boolean: (flag, def) => client.getBooleanDetails(flag, def, context),
  float: (flag, def) => client.getNumberDetails(flag, def, context),
};
const results = [];
for (const item of spec) {
  const details = await evaluate[item.type](item.flag, item.default);
  results.push({
    flag: item.flag,
    value: details.value,
    variant: details.variant ?? null,
    reason: details.reason ?? null,
    error_code: details.errorCode ?? null,
  });
}
console.log(JSON.stringify(results));
await OpenFeature.close();
