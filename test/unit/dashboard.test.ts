// The Grafana dashboard (docker/grafana/dashboards/warren.json) charts only what warren exports.
// (test/observability/prometheus.test.ts runs each of its queries against a real Prometheus.)
import { readFileSync } from 'node:fs';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { registerMetrics } from '../../src/metrics/index.js';
import { dashboard, dashboardQueries } from '../helpers/dashboard.js';

describe('the Grafana dashboard', () => {
  it('queries only metrics warren registers (a histogram by its _bucket, _sum or _count)', async () => {
    expect.hasAssertions();
    const registry = new Registry();
    const metrics = registerMetrics(registry);
    const exported = new Set((await registry.getMetricsAsJSON()).flatMap((m) => (String(m.type) === 'histogram' ? ['_bucket', '_sum', '_count'].map((s) => m.name + s) : [m.name])));
    metrics.close();
    const used = new Set(dashboardQueries().flatMap(({ expr }) => expr.match(/\bwarren_[a-z_]+/g) ?? []));
    expect(used.size).toBeGreaterThan(10);
    expect([...used].filter((name) => !exported.has(name))).toEqual([]);
  });

  it('is a Grafana dashboard: a uid, panels with unique ids on the provisioned Prometheus data source, each with a query', () => {
    expect(dashboard.uid).toBe('warren');
    expect(dashboard.schemaVersion).toBeGreaterThanOrEqual(36);
    expect(new Set(dashboard.panels.map((p) => p.id)).size).toBe(dashboard.panels.length);
    for (const p of dashboard.panels) {
      expect(p.datasource).toEqual({ type: 'prometheus', uid: 'prometheus' });
      expect(p.targets.length).toBeGreaterThan(0);
      expect(p.gridPos.w).toBeGreaterThan(0);
    }
    const provisioned = readFileSync(new URL('../../docker/grafana/provisioning/datasources/prometheus.yml', import.meta.url), 'utf8');
    expect(provisioned).toContain('uid: prometheus');
  });
});
