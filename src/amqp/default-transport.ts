/** The transport `connect()` uses unless given another: AMQP 0-9-1 over TCP (or TLS), through amqplib. */
export { amqplibTransport as defaultTransport } from './amqplib.js';
