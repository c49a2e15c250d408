// The example shop's consumers as one app: what `warren run` starts.
//   npm run warren -- run consumers/app.ts            (or, installed: npx warren run consumers/app.ts)
// SIGTERM or Ctrl-C stops it gracefully: handlers finish and their messages are acked first.
import { defineApp } from '../src/index.js';
import { OrderPlaced, topology } from '../producers/contracts.js';
import billing from './billing.js';
import shipping from './shipping.js';

export default defineApp({
  name: 'shop',
  topology,
  messages: [OrderPlaced],
  consumers: [billing, shipping],
});
