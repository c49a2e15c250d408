// The Grafana dashboard in docker/grafana/dashboards/warren.json, as the tests read it.
import { readFileSync } from 'node:fs';

export interface Panel {
  id: number;
  type: string;
  title: string;
  datasource: { type: string; uid: string };
  gridPos: { x: number; y: number; w: number; h: number };
  targets: { refId: string; expr: string }[];
}

export const dashboard = JSON.parse(readFileSync(new URL('../../docker/grafana/dashboards/warren.json', import.meta.url), 'utf8')) as {
  uid: string;
  schemaVersion: number;
  panels: Panel[];
};

/** Every PromQL query the dashboard makes, with its panel's title. */
export function dashboardQueries(): { panel: string; expr: string }[] {
  return dashboard.panels.flatMap((p) => p.targets.map((t) => ({ panel: p.title, expr: t.expr })));
}
