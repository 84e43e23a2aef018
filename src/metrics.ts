/**
 * Metrics: a small registry of counters, gauges and histograms with labels, metrics read at
 * scrape time (`onScrape`), and the Prometheus text exposition format 0.0.4 they are served in.
 *
 * Recording is on hot paths (every HTTP request, every DNS query), so a labelled series is
 * resolved once — `family.labels({...})` returns the series object, which the caller keeps —
 * and recording is then a field update: no label strings, no map lookups. Label text is
 * escaped once, when the series is made; only a scrape builds strings.
 */
import type { Action } from "./intel/policy.ts";
import type { Channel } from "./intel/shield.ts";

export const PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

export type Labels = Readonly<Record<string, string>>;
export type MetricType = "counter" | "gauge" | "histogram";

/** One series of a counter: only goes up (from zero, when the process starts). */
export class Counter {
  value = 0;
  inc(n = 1): void {
    this.value += n;
  }
}

/** One series of a gauge: a value that goes up and down. */
export class Gauge {
  value = 0;
  set(value: number): void {
    this.value = value;
  }
  inc(n = 1): void {
    this.value += n;
  }
  dec(n = 1): void {
    this.value -= n;
  }
}

/** Linear search below this many bounds (the common values sit in the first few buckets); binary above. */
const LINEAR_SEARCH_MAX = 16;

/** One series of a histogram: observations counted into fixed buckets, with their sum and count. */
export class Histogram {
  /** Per bucket, not cumulative; the last one is +Inf. */
  readonly buckets: Float64Array;
  sum = 0;
  count = 0;

  constructor(readonly bounds: Float64Array) {
    this.buckets = new Float64Array(bounds.length + 1);
  }

  observe(value: number): void {
    const bounds = this.bounds;
    const n = bounds.length;
    let i = 0;
    if (n <= LINEAR_SEARCH_MAX) {
      while (i < n && value > bounds[i]!) i++;
    } else {
      // The first bound >= value (`le` is inclusive).
      let hi = n;
      while (i < hi) {
        const mid = (i + hi) >>> 1;
        if (value > bounds[mid]!) i = mid + 1;
        else hi = mid;
      }
    }
    this.buckets[i]!++;
    this.sum += value;
    this.count++;
  }
}

/** Latency buckets in seconds, from half a millisecond (a cached GET) to ten seconds. */
export const LATENCY_BUCKETS: readonly number[] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

interface Series<S> {
  /** The label pairs as exposed, escaped: `method="GET",route="/healthz"` ("" without labels). */
  labelText: string;
  series: S;
}

/** A metric and its series, one per combination of label values. */
export class Family<S> {
  private readonly series = new Map<string, Series<S>>();

  constructor(
    readonly name: string,
    readonly help: string,
    readonly type: MetricType,
    readonly labelNames: readonly string[],
    private readonly make: () => S,
  ) {}

  /**
   * The series for these label values, made on first use. Resolve it once and keep it: this
   * builds a key, which is what the hot paths must not do per event.
   */
  labels(values: Labels = {}): S {
    const names = this.labelNames;
    const given = Object.keys(values);
    if (given.length !== names.length || names.some((n) => typeof values[n] !== "string")) {
      throw new Error(`metric ${this.name}: give exactly the labels ${names.length === 0 ? "(none)" : names.join(", ")}; got ${given.join(", ") || "(none)"}`);
    }
    const key = names.map((n) => values[n]).join("\u0000");
    let entry = this.series.get(key);
    if (!entry) {
      entry = { labelText: names.map((n) => `${n}="${escapeLabelValue(values[n]!)}"`).join(","), series: this.make() };
      this.series.set(key, entry);
    }
    return entry.series;
  }

  /** Every series made so far, in the order they were made. */
  entries(): Iterable<Series<S>> {
    return this.series.values();
  }
}

export type CounterFamily = Family<Counter>;
export type GaugeFamily = Family<Gauge>;
export type HistogramFamily = Family<Histogram>;

export interface ScrapeSample {
  labels?: Labels;
  value: number;
}

export interface ScrapeMetric {
  name: string;
  help: string;
  type: "counter" | "gauge";
  labelNames?: readonly string[];
  /**
   * Called at every scrape: one value (no labels), a list of labelled samples, or null when
   * there is nothing to report now (the metric is then exposed without samples).
   */
  read(): number | null | readonly ScrapeSample[];
}

export interface MetricsOptions {
  /** A scrape-time metric failed; its samples are left out of that scrape. */
  onReadError?: (name: string, error: unknown) => void;
}

type Registered =
  | { kind: "series"; family: Family<Counter | Gauge | Histogram>; shape: string }
  | { kind: "scrape"; metric: ScrapeMetric };

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

export class Metrics {
  private readonly registered = new Map<string, Registered>();
  /** Names a histogram's samples take (`x_bucket`, `x_sum`, `x_count`): no other metric may use them. */
  private readonly reserved = new Set<string>();
  private sortedNames: string[] | null = null;

  constructor(private readonly options: MetricsOptions = {}) {}

  /**
   * A counter family. Asking again for the same name with the same help and labels returns the
   * same family, so that independent parts (the HTTP guard and the DNS gate) can share one.
   */
  counter(name: string, help: string, labelNames: readonly string[] = []): CounterFamily {
    return this.family(name, help, "counter", labelNames, "", () => new Counter()) as CounterFamily;
  }

  gauge(name: string, help: string, labelNames: readonly string[] = []): GaugeFamily {
    return this.family(name, help, "gauge", labelNames, "", () => new Gauge()) as GaugeFamily;
  }

  /** A histogram family; `buckets` are the upper bounds (`le`), increasing, +Inf implied. */
  histogram(name: string, help: string, labelNames: readonly string[] = [], buckets: readonly number[] = LATENCY_BUCKETS): HistogramFamily {
    if (labelNames.includes("le")) throw new Error(`metric ${name}: "le" is the histogram's own label`);
    if (buckets.length === 0 || buckets.some((b, i) => !Number.isFinite(b) || (i > 0 && b <= buckets[i - 1]!))) {
      throw new Error(`metric ${name}: buckets must be finite and strictly increasing`);
    }
    const bounds = Float64Array.from(buckets);
    return this.family(name, help, "histogram", labelNames, buckets.join(","), () => new Histogram(bounds)) as HistogramFamily;
  }

  /** A metric read at scrape time (seal state, key ages, backup age). Returns the function that removes it. */
  onScrape(metric: ScrapeMetric): () => void {
    this.checkNew(metric.name, metric.help, metric.labelNames ?? []);
    const entry: Registered = { kind: "scrape", metric };
    this.registered.set(metric.name, entry);
    this.sortedNames = null;
    return () => {
      if (this.registered.get(metric.name) !== entry) return;
      this.registered.delete(metric.name);
      this.sortedNames = null;
    };
  }

  /** Everything, in the text exposition format 0.0.4, metrics sorted by name. */
  render(): string {
    this.sortedNames ??= [...this.registered.keys()].sort();
    const out: string[] = [];
    for (const name of this.sortedNames) {
      const entry = this.registered.get(name)!;
      if (entry.kind === "series") renderFamily(out, entry.family);
      else this.renderScrapeMetric(out, entry.metric);
    }
    return out.join("");
  }

  private family(name: string, help: string, type: MetricType, labelNames: readonly string[], extra: string, make: () => Counter | Gauge | Histogram) {
    const shape = `${type}|${help}|${labelNames.join(",")}|${extra}`;
    const existing = this.registered.get(name);
    if (existing?.kind === "series" && existing.shape === shape) return existing.family;
    this.checkNew(name, help, labelNames);
    const family = new Family(name, help, type, [...labelNames], make);
    this.registered.set(name, { kind: "series", family, shape });
    if (type === "histogram") for (const suffix of ["_bucket", "_sum", "_count"]) this.reserved.add(name + suffix);
    this.sortedNames = null;
    return family;
  }

  private checkNew(name: string, help: string, labelNames: readonly string[]): void {
    if (!METRIC_NAME.test(name)) throw new Error(`metric name ${JSON.stringify(name)}: use letters, digits, _ and :`);
    if (this.registered.has(name) || this.reserved.has(name)) throw new Error(`metric ${name} is registered already (with another type, help or labels)`);
    if (!help.trim()) throw new Error(`metric ${name}: say what it measures (help)`);
    for (const label of labelNames) {
      if (!LABEL_NAME.test(label) || label.startsWith("__")) throw new Error(`metric ${name}: label name ${JSON.stringify(label)} is not valid`);
    }
    if (new Set(labelNames).size !== labelNames.length) throw new Error(`metric ${name}: a label is named twice`);
  }

  private renderScrapeMetric(out: string[], metric: ScrapeMetric): void {
    // A throwaway family renders the samples: label checks and escaping are the same as for series.
    const fresh = () => new Family(metric.name, metric.help, metric.type, metric.labelNames ?? [], () => new Gauge());
    let family = fresh();
    try {
      const read = metric.read();
      if (typeof read === "number") family.labels().set(read);
      else if (read !== null) for (const sample of read) family.labels(sample.labels).set(sample.value);
    } catch (error) {
      this.options.onReadError?.(metric.name, error);
      family = fresh(); // none of its samples: a half-read metric would mislead
    }
    renderFamily(out, family);
  }
}

function renderFamily(out: string[], family: Family<Counter | Gauge | Histogram>): void {
  const { name } = family;
  out.push(`# HELP ${name} ${escapeHelp(family.help)}\n# TYPE ${name} ${family.type}\n`);
  let les: string[] | null = null; // the bounds as text: the same for every series of a family
  for (const { labelText, series } of family.entries()) {
    if (series instanceof Histogram) {
      les ??= Array.from(series.bounds, formatNumber);
      const bucket = `${name}_bucket{${labelText === "" ? "" : `${labelText},`}le="`;
      const braces = labelText === "" ? "" : `{${labelText}}`;
      let text = "";
      let cumulative = 0;
      for (let i = 0; i < les.length; i++) {
        cumulative += series.buckets[i]!;
        text += `${bucket}${les[i]}"} ${cumulative}\n`;
      }
      out.push(`${text}${bucket}+Inf"} ${series.count}\n${name}_sum${braces} ${formatNumber(series.sum)}\n${name}_count${braces} ${series.count}\n`);
    } else {
      out.push(`${name}${labelText === "" ? "" : `{${labelText}}`} ${formatNumber(series.value)}\n`);
    }
  }
}

/** A sample value as Prometheus (Go's ParseFloat) reads it. */
export function formatNumber(value: number): string {
  if (Number.isNaN(value)) return "NaN";
  if (value === Infinity) return "+Inf";
  if (value === -Infinity) return "-Inf";
  return String(value);
}

/** Label values may hold anything: backslash, double quote and line feed are escaped. */
export function escapeLabelValue(value: string): string {
  return /[\\"\n]/.test(value) ? value.replace(/[\\"\n]/g, (c) => (c === "\n" ? "\\n" : `\\${c}`)) : value;
}

/** Help text escapes backslash and line feed (not the double quote). */
function escapeHelp(help: string): string {
  return help.replace(/[\\\n]/g, (c) => (c === "\n" ? "\\n" : "\\\\"));
}

// -----------------------------------------------------------------------------------------------
// Metrics recorded by more than one module: defined once here so every part shares the family.

export type ShieldVerdictCounters = Readonly<Record<Action, Counter>>;

const SHIELD_ACTIONS: readonly Action[] = ["allow", "throttle", "refuse", "drop"];

/**
 * The shield's verdicts on one channel, all four series made at once (so they exist at zero):
 * the HTTP guard counts into the "http" ones, the DNS server's gate into the "dns" ones.
 */
export function shieldVerdictCounters(metrics: Metrics, channel: Channel): ShieldVerdictCounters {
  const family = metrics.counter("citadel_shield_verdicts_total", "Verdicts the shield gave on client addresses, by channel (http, dns) and action.", ["channel", "action"]);
  return Object.fromEntries(SHIELD_ACTIONS.map((action) => [action, family.labels({ channel, action })])) as Record<Action, Counter>;
}
