// `warren/metrics`: Prometheus metrics from warren's diagnostics channels (needs prom-client).
export { registerMetrics } from './prometheus.js';
export type { MetricsOptions, WarrenMetrics } from './prometheus.js';
