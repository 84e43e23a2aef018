/**
 * A strict parser of the Prometheus text exposition format 0.0.4, for tests of what GET /metrics
 * serves. Strict where Prometheus is lenient and our output should be canonical: every metric
 * has HELP and TYPE before its first sample, a metric's lines form one group, no other
 * comments, no blank lines, no empty `{}` or trailing commas, no duplicate series. Histograms
 * are checked as a whole: `le` increasing, buckets cumulative, ending in +Inf equal to _count,
 * with _sum and _count present.
 */
export type MetricKind = "counter" | "gauge" | "histogram" | "summary" | "untyped";

export interface ParsedSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface ParsedFamily {
  name: string;
  help: string;
  type: MetricKind;
  samples: ParsedSample[];
}

export class ExpositionError extends Error {
  override readonly name = "ExpositionError";
}

const NAME = "[a-zA-Z_:][a-zA-Z0-9_:]*";
const HELP_LINE = new RegExp(`^# HELP (${NAME}) (.*)$`);
const TYPE_LINE = new RegExp(`^# TYPE (${NAME}) (counter|gauge|histogram|summary|untyped)$`);
const METRIC_NAME = new RegExp(`^${NAME}`);
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*/;
const FLOAT = /^(?:[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|[+-]?Inf|NaN)$/;
const TIMESTAMP = /^-?\d+$/;

export function parseFloatValue(text: string): number {
  if (!FLOAT.test(text)) throw new ExpositionError(`${JSON.stringify(text)} is not a float`);
  if (text.endsWith("Inf")) return text.startsWith("-") ? -Infinity : Infinity;
  return text === "NaN" ? NaN : Number(text);
}

/** Parses and checks a whole exposition; returns the metrics by name, in order of appearance. */
export function parsePrometheusText(text: string): Map<string, ParsedFamily> {
  const families = new Map<string, ParsedFamily & { hasHelp: boolean; hasType: boolean }>();
  if (text === "") return families;
  if (!text.endsWith("\n")) throw new ExpositionError("the exposition must end with a line feed");
  const lines = text.slice(0, -1).split("\n");
  const finished = new Set<string>();
  const series = new Set<string>();
  let current: string | null = null;

  const enter = (name: string, lineNo: number) => {
    if (current === name) return;
    if (finished.has(name)) throw new ExpositionError(`line ${lineNo}: the lines of ${name} are not one group`);
    if (current !== null) finished.add(current);
    current = name;
  };
  const familyOf = (name: string) => {
    let f = families.get(name);
    if (!f) families.set(name, (f = { name, help: "", type: "untyped", samples: [], hasHelp: false, hasType: false }));
    return f;
  };

  lines.forEach((line, index) => {
    const lineNo = index + 1;
    if (line === "") throw new ExpositionError(`line ${lineNo}: blank line`);
    if (line.startsWith("#")) {
      const help = HELP_LINE.exec(line);
      const type = TYPE_LINE.exec(line);
      if (!help && !type) throw new ExpositionError(`line ${lineNo}: not a HELP or TYPE line: ${line}`);
      const name = (help ?? type)![1]!;
      enter(name, lineNo);
      const f = familyOf(name);
      if (f.samples.length > 0) throw new ExpositionError(`line ${lineNo}: ${help ? "HELP" : "TYPE"} of ${name} after its samples`);
      if (help) {
        if (f.hasHelp) throw new ExpositionError(`line ${lineNo}: second HELP for ${name}`);
        f.hasHelp = true;
        f.help = unescapeHelp(help[2]!, lineNo);
      } else {
        if (f.hasType) throw new ExpositionError(`line ${lineNo}: second TYPE for ${name}`);
        f.hasType = true;
        f.type = type![2] as MetricKind;
      }
      return;
    }
    const sample = parseSampleLine(line, lineNo);
    const f = owningFamily(families, sample.name);
    if (!f || !f.hasHelp || !f.hasType) throw new ExpositionError(`line ${lineNo}: sample ${sample.name} before (or without) the HELP and TYPE of its metric`);
    enter(f.name, lineNo);
    checkSampleName(f, sample, lineNo);
    const key = `${sample.name}${JSON.stringify(Object.entries(sample.labels).sort(([a], [b]) => (a < b ? -1 : 1)))}`;
    if (series.has(key)) throw new ExpositionError(`line ${lineNo}: duplicate series ${line}`);
    series.add(key);
    f.samples.push(sample);
  });

  for (const f of families.values()) {
    if (!f.hasHelp || !f.hasType) throw new ExpositionError(`${f.name}: HELP and TYPE are both required`);
    if (f.type === "histogram") checkHistogram(f);
  }
  return new Map([...families].map(([name, { hasHelp: _h, hasType: _t, ...f }]) => [name, f]));
}

/** The value of the sample with exactly these labels, or undefined. */
export function sampleValue(families: Map<string, ParsedFamily>, sampleName: string, labels: Record<string, string> = {}): number | undefined {
  for (const f of families.values()) {
    for (const s of f.samples) if (s.name === sampleName && sameLabels(s.labels, labels)) return s.value;
  }
  return undefined;
}

function sameLabels(a: Record<string, string>, b: Record<string, string>): boolean {
  const ka = Object.keys(a);
  return ka.length === Object.keys(b).length && ka.every((k) => a[k] === b[k]);
}

function owningFamily<F extends ParsedFamily>(families: Map<string, F>, sampleName: string): F | undefined {
  const exact = families.get(sampleName);
  if (exact && exact.type !== "histogram" && exact.type !== "summary") return exact;
  for (const suffix of ["_bucket", "_sum", "_count"]) {
    if (!sampleName.endsWith(suffix)) continue;
    const base = families.get(sampleName.slice(0, -suffix.length));
    if (base && (base.type === "histogram" || (base.type === "summary" && suffix !== "_bucket"))) return base;
  }
  return exact; // a summary's quantiles carry the base name
}

function checkSampleName(f: ParsedFamily, s: ParsedSample, lineNo: number): void {
  const hasLe = "le" in s.labels;
  if (f.type === "histogram") {
    if (s.name === `${f.name}_bucket`) {
      if (!hasLe) throw new ExpositionError(`line ${lineNo}: a histogram bucket without le`);
      parseFloatValue(s.labels.le!);
    } else if (hasLe) throw new ExpositionError(`line ${lineNo}: le on ${s.name}`);
  } else if (s.name !== f.name && f.type !== "summary") throw new ExpositionError(`line ${lineNo}: sample ${s.name} in metric ${f.name}`);
  if (f.type === "counter" && !(s.value >= 0)) throw new ExpositionError(`line ${lineNo}: counter ${s.name} is ${s.value}`);
  if ((f.type === "histogram" || f.type === "summary") && (s.name.endsWith("_count") || s.name.endsWith("_bucket")) && !(s.value >= 0 && Number.isInteger(s.value))) {
    throw new ExpositionError(`line ${lineNo}: ${s.name} must be a non-negative whole number, is ${s.value}`);
  }
}

function checkHistogram(f: ParsedFamily): void {
  const groups = new Map<string, { buckets: Array<{ le: number; value: number }>; sum?: number; count?: number }>();
  for (const s of f.samples) {
    const { le, ...rest } = s.labels;
    const key = JSON.stringify(Object.entries(rest).sort(([a], [b]) => (a < b ? -1 : 1)));
    let g = groups.get(key);
    if (!g) groups.set(key, (g = { buckets: [] }));
    if (s.name.endsWith("_bucket")) g.buckets.push({ le: parseFloatValue(le!), value: s.value });
    else if (s.name.endsWith("_sum")) g.sum = s.value;
    else g.count = s.value;
  }
  for (const [key, g] of groups) {
    const where = `${f.name}${key}`;
    if (g.buckets.length === 0 || g.sum === undefined || g.count === undefined) throw new ExpositionError(`${where}: needs buckets, _sum and _count`);
    for (let i = 1; i < g.buckets.length; i++) {
      if (!(g.buckets[i]!.le > g.buckets[i - 1]!.le)) throw new ExpositionError(`${where}: le values not increasing`);
      if (g.buckets[i]!.value < g.buckets[i - 1]!.value) throw new ExpositionError(`${where}: bucket counts not cumulative`);
    }
    const last = g.buckets.at(-1)!;
    if (last.le !== Infinity) throw new ExpositionError(`${where}: the last bucket must be le="+Inf"`);
    if (last.value !== g.count) throw new ExpositionError(`${where}: the +Inf bucket (${last.value}) is not _count (${g.count})`);
  }
}

function parseSampleLine(line: string, lineNo: number): ParsedSample {
  const fail = (why: string): never => {
    throw new ExpositionError(`line ${lineNo}: ${why}: ${line}`);
  };
  const nameMatch = METRIC_NAME.exec(line) ?? fail("no metric name");
  const name = nameMatch[0];
  let i = name.length;
  const labels: Record<string, string> = {};
  if (line[i] === "{") {
    i++;
    for (;;) {
      const labelMatch = LABEL_NAME.exec(line.slice(i)) ?? fail("expected a label name");
      const label = labelMatch[0];
      if (label in labels) fail(`label ${label} twice`);
      i += label.length;
      if (line[i] !== "=" || line[i + 1] !== '"') fail(`expected =" after ${label}`);
      i += 2;
      let value = "";
      for (;;) {
        const c = line[i] ?? fail("unterminated label value");
        i++;
        if (c === '"') break;
        if (c !== "\\") {
          value += c;
          continue;
        }
        const next = line[i] ?? fail("unterminated escape");
        i++;
        if (next === "\\") value += "\\";
        else if (next === '"') value += '"';
        else if (next === "n") value += "\n";
        else fail(`bad escape \\${next}`);
      }
      labels[label] = value;
      if (line[i] === ",") {
        i++;
        continue;
      }
      if (line[i] === "}") {
        i++;
        break;
      }
      fail("expected , or } after a label value");
    }
  }
  if (line[i] !== " ") fail("expected a space before the value");
  const rest = line.slice(i + 1).split(" ");
  if (rest.length > 2 || (rest.length === 2 && !TIMESTAMP.test(rest[1]!))) fail("expected a value and at most a timestamp");
  let value: number;
  try {
    value = parseFloatValue(rest[0]!);
  } catch {
    return fail("bad value");
  }
  return { name, labels, value };
}

function unescapeHelp(text: string, lineNo: number): string {
  return text.replace(/\\(.?)/g, (_, c: string) => {
    if (c === "\\") return "\\";
    if (c === "n") return "\n";
    throw new ExpositionError(`line ${lineNo}: bad escape in HELP: \\${c}`);
  });
}
