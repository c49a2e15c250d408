// `warren/otel`: OpenTelemetry spans from warren's diagnostics channels (needs @opentelemetry/api).
export { registerTracing } from './tracing.js';
export type { TracingOptions, WarrenTracing } from './tracing.js';
