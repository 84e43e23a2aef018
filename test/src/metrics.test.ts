import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { Histogram, Metrics, PROMETHEUS_CONTENT_TYPE, escapeLabelValue, formatNumber, shieldVerdictCounters } from "../../src/metrics.ts";
import { ExpositionError, parsePrometheusText, sampleValue } from "../helpers/prometheus-text.ts";

describe("the text exposition format", () => {
  test("counters, gauges and histograms render exactly as Prometheus expects (known answer)", () => {
    const m = new Metrics();
    const requests = m.counter("demo_requests_total", "Requests.\nBy route.", ["route", "status"]);
    requests.labels({ route: "/a", status: "200" }).inc();
    requests.labels({ route: "/a", status: "200" }).inc(2);
    requests.labels({ route: '/b"\\', status: "404" }).inc();
    m.gauge("demo_temperature", "A gauge with a back\\slash in its help.").labels().set(-1.5);
    const latency = m.histogram("demo_seconds", "Latency.", ["route"], [0.1, 1]);
    const a = latency.labels({ route: "/a" });
    for (const v of [0.05, 0.1, 0.5, 3]) a.observe(v);
    m.histogram("demo_empty_seconds", "No labels.", [], [1]).labels();

    expect(m.render()).toBe(
      [
        "# HELP demo_empty_seconds No labels.",
        "# TYPE demo_empty_seconds histogram",
        'demo_empty_seconds_bucket{le="1"} 0',
        'demo_empty_seconds_bucket{le="+Inf"} 0',
        "demo_empty_seconds_sum 0",
        "demo_empty_seconds_count 0",
        "# HELP demo_requests_total Requests.\\nBy route.",
        "# TYPE demo_requests_total counter",
        'demo_requests_total{route="/a",status="200"} 3',
        'demo_requests_total{route="/b\\"\\\\",status="404"} 1',
        "# HELP demo_seconds Latency.",
        "# TYPE demo_seconds histogram",
        'demo_seconds_bucket{route="/a",le="0.1"} 2', // le is inclusive: 0.1 counts in the 0.1 bucket
        'demo_seconds_bucket{route="/a",le="1"} 3',
        'demo_seconds_bucket{route="/a",le="+Inf"} 4',
        'demo_seconds_sum{route="/a"} 3.65',
        'demo_seconds_count{route="/a"} 4',
        "# HELP demo_temperature A gauge with a back\\\\slash in its help.",
        "# TYPE demo_temperature gauge",
        "demo_temperature -1.5",
        "",
      ].join("\n"),
    );
    const parsed = parsePrometheusText(m.render());
    expect(parsed.get("demo_requests_total")!.help).toBe("Requests.\nBy route.");
    expect(sampleValue(parsed, "demo_requests_total", { route: '/b"\\', status: "404" })).toBe(1);
    expect(PROMETHEUS_CONTENT_TYPE).toBe("text/plain; version=0.0.4; charset=utf-8");
  });

  test("special values are written as Go's ParseFloat reads them", () => {
    expect([NaN, Infinity, -Infinity, 0, 1e21, 0.0005].map(formatNumber)).toEqual(["NaN", "+Inf", "-Inf", "0", "1e+21", "0.0005"]);
  });

  test("any label value survives rendering and strict parsing (property)", () => {
    fc.assert(
      fc.property(fc.string({ unit: "binary" }), fc.string({ unit: "grapheme" }), (a, b) => {
        const m = new Metrics();
        const f = m.counter("x_total", "x", ["a", "b"]);
        f.labels({ a, b }).inc(7);
        const parsed = parsePrometheusText(m.render());
        expect(sampleValue(parsed, "x_total", { a, b })).toBe(7);
        expect(escapeLabelValue(a).includes("\n")).toBe(false);
      }),
    );
  });
});

describe("histograms", () => {
  test("the binary search (many buckets) and the linear one (few) agree with a plain count (property)", () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.double({ min: -1e6, max: 1e6, noNaN: true }), { minLength: 1, maxLength: 40 }),
        fc.array(fc.oneof(fc.double({ min: -2e6, max: 2e6, noNaN: true }), fc.constantFrom(Infinity, -Infinity)), { maxLength: 50 }),
        (raw, values) => {
          const bounds = [...new Set(raw.map((b) => (Object.is(b, -0) ? 0 : b)))].sort((x, y) => x - y);
          const h = new Histogram(Float64Array.from(bounds));
          for (const v of values) h.observe(v);
          const expected = bounds.map((b, i) => values.filter((v) => v <= b && (i === 0 || v > bounds[i - 1]!)).length);
          expected.push(values.filter((v) => v > bounds.at(-1)!).length);
          expect([...h.buckets]).toEqual(expected);
          expect(h.count).toBe(values.length);
        },
      ),
    );
  });

  test("buckets must be finite and increasing; le is the histogram's own label", () => {
    const m = new Metrics();
    expect(() => m.histogram("h1", "h", [], [1, 1])).toThrow(/increasing/);
    expect(() => m.histogram("h2", "h", [], [1, Infinity])).toThrow(/finite/);
    expect(() => m.histogram("h3", "h", ["le"])).toThrow(/le/);
  });
});

describe("the registry", () => {
  test("asking again for the same metric gives the same family; a different shape is refused", () => {
    const m = new Metrics();
    const a = m.counter("c_total", "Counts.", ["x"]);
    expect(m.counter("c_total", "Counts.", ["x"])).toBe(a);
    expect(a.labels({ x: "1" })).toBe(a.labels({ x: "1" }));
    expect(() => m.counter("c_total", "Counts.", ["y"])).toThrow(/registered already/);
    expect(() => m.gauge("c_total", "Counts.", ["x"])).toThrow(/registered already/);
    m.histogram("h_seconds", "H.");
    expect(() => m.gauge("h_seconds_count", "Clashes with the histogram's samples.")).toThrow(/registered already/);
  });

  test("names, labels and help are checked when registering; label values when resolving", () => {
    const m = new Metrics();
    expect(() => m.counter("bad-name", "x")).toThrow(/metric name/);
    expect(() => m.counter("ok_total", "x", ["bad-label"])).toThrow(/label name/);
    expect(() => m.counter("ok_total", "x", ["__reserved"])).toThrow(/label name/);
    expect(() => m.counter("ok_total", "x", ["a", "a"])).toThrow(/twice/);
    expect(() => m.counter("ok_total", " ")).toThrow(/help/);
    const f = m.counter("ok_total", "x", ["a"]);
    expect(() => f.labels({})).toThrow(/exactly the labels a/);
    expect(() => f.labels({ a: "1", b: "2" })).toThrow(/exactly the labels a/);
  });

  test("scrape-time metrics are read at every render, can be removed, and a failing one is left out", () => {
    const errors: string[] = [];
    const m = new Metrics({ onReadError: (name) => errors.push(name) });
    let value = 1;
    const remove = m.onScrape({ name: "live_value", type: "gauge", help: "Read at scrape.", read: () => value });
    m.onScrape({ name: "by_key", type: "gauge", help: "Labelled.", labelNames: ["key"], read: () => [{ labels: { key: "a" }, value: 2 }] });
    m.onScrape({ name: "nothing_now", type: "gauge", help: "Absent.", read: () => null });
    m.onScrape({ name: "broken", type: "counter", help: "Throws.", read: () => { throw new Error("disk gone"); } });
    m.onScrape({ name: "mislabelled", type: "gauge", help: "Wrong labels.", labelNames: ["key"], read: () => [{ labels: { key: "a" }, value: 1 }, { value: 2 }] });
    expect(sampleValue(parsePrometheusText(m.render()), "live_value")).toBe(1);
    value = 5;
    const parsed = parsePrometheusText(m.render());
    expect(sampleValue(parsed, "live_value")).toBe(5);
    expect(sampleValue(parsed, "by_key", { key: "a" })).toBe(2);
    expect(parsed.get("nothing_now")!.samples).toEqual([]);
    expect(parsed.get("broken")!.samples).toEqual([]);
    expect(parsed.get("mislabelled")!.samples).toEqual([]); // none rather than half
    expect(errors).toEqual(["broken", "mislabelled", "broken", "mislabelled"]);
    expect(() => m.onScrape({ name: "live_value", type: "gauge", help: "Again.", read: () => 0 })).toThrow(/registered already/);
    remove();
    expect(parsePrometheusText(m.render()).has("live_value")).toBe(false);
  });

  test("shield verdict counters: all four actions exist per channel from the start, both channels in one family", () => {
    const m = new Metrics();
    const http = shieldVerdictCounters(m, "http");
    const dns = shieldVerdictCounters(m, "dns");
    http.refuse.inc();
    dns.drop.inc(3);
    const parsed = parsePrometheusText(m.render());
    expect(parsed.get("citadel_shield_verdicts_total")!.samples).toHaveLength(8);
    expect(sampleValue(parsed, "citadel_shield_verdicts_total", { channel: "http", action: "refuse" })).toBe(1);
    expect(sampleValue(parsed, "citadel_shield_verdicts_total", { channel: "dns", action: "drop" })).toBe(3);
    expect(sampleValue(parsed, "citadel_shield_verdicts_total", { channel: "dns", action: "allow" })).toBe(0);
  });

  test("recording a resolved series costs nanoseconds", () => {
    const m = new Metrics();
    const c = m.counter("hot_total", "Hot.", ["a"]).labels({ a: "x" });
    const h = m.histogram("hot_seconds", "Hot.").labels();
    const n = 2_000_000;
    const started = Bun.nanoseconds();
    for (let i = 0; i < n; i++) {
      c.inc();
      h.observe((i % 1000) / 1e6);
    }
    const perRecord = (Bun.nanoseconds() - started) / n;
    expect(c.value).toBe(n);
    expect(perRecord).toBeLessThan(200); // typically 5–15 ns; a loose bound for slow CI machines
  });
});

describe("the strict parser used by these tests", () => {
  const bad: Array<[string, string]> = [
    ["no final line feed", "# HELP a x\n# TYPE a gauge\na 1"],
    ["a sample before its TYPE", "# HELP a x\na 1\n# TYPE a gauge\n"],
    ["a sample without HELP", "# TYPE a gauge\na 1\n"],
    ["a metric split in two groups", "# HELP a x\n# TYPE a gauge\na{k=\"1\"} 1\n# HELP b x\n# TYPE b gauge\nb 1\na{k=\"2\"} 1\n"],
    ["a bad label name", '# HELP a x\n# TYPE a gauge\na{1k="v"} 1\n'],
    ["an unknown escape", '# HELP a x\n# TYPE a gauge\na{k="\\t"} 1\n'],
    ["a trailing comma", '# HELP a x\n# TYPE a gauge\na{k="v",} 1\n'],
    ["a duplicate series", "# HELP a x\n# TYPE a gauge\na 1\na 2\n"],
    ["a negative counter", "# HELP a_total x\n# TYPE a_total counter\na_total -1\n"],
    ["a bad value", "# HELP a x\n# TYPE a gauge\na one\n"],
    ["another comment", "# HELP a x\n# TYPE a gauge\n# hello\na 1\n"],
    ["buckets not cumulative", '# HELP h x\n# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n'],
    ["no +Inf bucket", '# HELP h x\n# TYPE h histogram\nh_bucket{le="1"} 1\nh_sum 1\nh_count 1\n'],
    ["+Inf not equal to _count", '# HELP h x\n# TYPE h histogram\nh_bucket{le="+Inf"} 2\nh_sum 1\nh_count 1\n'],
    ["le not increasing", '# HELP h x\n# TYPE h histogram\nh_bucket{le="2"} 1\nh_bucket{le="1"} 1\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n'],
    ["no _sum", '# HELP h x\n# TYPE h histogram\nh_bucket{le="+Inf"} 1\nh_count 1\n'],
  ];
  for (const [why, text] of bad) test(`refuses ${why}`, () => expect(() => parsePrometheusText(text)).toThrow(ExpositionError));

  test("accepts a well-formed exposition", () => {
    const parsed = parsePrometheusText('# HELP h x\n# TYPE h histogram\nh_bucket{a="1",le="0.5"} 1\nh_bucket{a="1",le="+Inf"} 2\nh_sum{a="1"} 3.5\nh_count{a="1"} 2\n');
    expect(parsed.get("h")!.samples).toHaveLength(4);
  });
});
