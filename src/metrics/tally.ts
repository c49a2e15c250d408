import { Counter, type Registry } from 'prom-client';

/**
 * Counts kept as plain numbers by label set, handed to prom-client only when Prometheus scrapes:
 * prom-client validates and hashes a label set on every inc() and observe(), which cost about
 * 2 µs a message; a Map lookup by a string key costs a fraction of that.
 */
interface Entry {
  labels: Record<string, string>;
  value: number;
}

export class Tally {
  readonly #entries = new Map<string, Entry>();

  /** Adds `n` to the label set `key` (`labels()` is called only the first time it is seen). */
  add(key: string, labels: () => Record<string, string>, n = 1): void {
    const e = this.#entries.get(key);
    if (e !== undefined) e.value += n;
    else this.#entries.set(key, { labels: labels(), value: n });
  }

  values(): IterableIterator<Entry> {
    return this.#entries.values();
  }
}

/** A prom-client counter whose values are the tally's at each scrape. */
export function tallyCounter(tally: Tally, options: { name: string; help: string; labelNames: readonly string[]; registry: Registry }): Counter {
  return new Counter({
    name: options.name,
    help: options.help,
    labelNames: options.labelNames,
    registers: [options.registry],
    collect() {
      this.reset();
      for (const e of tally.values()) this.inc(e.labels, e.value);
    },
  });
}

interface Series {
  labels: Record<string, string>;
  /** Observations per bucket (not cumulative); the last is above every bound (+Inf). */
  counts: number[];
  sum: number;
  count: number;
}

interface Value {
  value: number;
  labels: Record<string, string | number>;
  metricName: string;
}

/**
 * A histogram that observes into plain numbers and answers the registry in prom-client's shape
 * (`registry.registerMetric()` takes any metric with `get()`): buckets cumulative, `le` labels,
 * `_sum` and `_count`.
 */
export class TallyHistogram {
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  readonly #series = new Map<string, Series>();

  constructor(
    readonly name: string,
    readonly help: string,
    readonly buckets: readonly number[],
  ) {}

  observe(key: string, labels: () => Record<string, string>, seconds: number): void {
    let s = this.#series.get(key);
    if (s === undefined) {
      s = { labels: labels(), counts: new Array<number>(this.buckets.length + 1).fill(0), sum: 0, count: 0 };
      this.#series.set(key, s);
    }
    let i = 0;
    while (i < this.buckets.length && seconds > (this.buckets[i] as number)) i++;
    s.counts[i] = (s.counts[i] as number) + 1;
    s.sum += seconds;
    s.count += 1;
  }

  get(): Promise<{ name: string; help: string; type: 'histogram'; values: Value[]; aggregator: 'sum' }> {
    const values: Value[] = [];
    for (const s of this.#series.values()) {
      let cumulative = 0;
      this.buckets.forEach((le, i) => {
        cumulative += s.counts[i] as number;
        values.push({ value: cumulative, labels: { ...s.labels, le }, metricName: `${this.name}_bucket` });
      });
      values.push({ value: s.count, labels: { ...s.labels, le: '+Inf' }, metricName: `${this.name}_bucket` });
      values.push({ value: s.sum, labels: s.labels, metricName: `${this.name}_sum` });
      values.push({ value: s.count, labels: s.labels, metricName: `${this.name}_count` });
    }
    return Promise.resolve({ name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator });
  }

  reset(): void {
    this.#series.clear();
  }
}
