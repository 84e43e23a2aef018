/**
 * The docs page at /docs: an HTML shell, a stylesheet and a small script that renders
 * /openapi.json. Kept as strings so they are part of the compiled binary. Addresses are
 * relative to /docs ("docs/ui.js", "openapi.json"), so the page works behind a reverse proxy
 * that serves Citadel under a path.
 */

export const DOCS_HTML = `<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>Citadel API</title>
  <link rel="stylesheet" href="docs/ui.css">
  <script src="docs/ui.js" defer></script>
</head>
<body>
  <header><h1>Citadel API</h1><p id="meta">Loading <a href="openapi.json">/openapi.json</a>…</p></header>
  <main id="operations"></main>
</body>
</html>
`;

export const DOCS_CSS = `body { font: 15px/1.5 system-ui, sans-serif; margin: 0 auto; max-width: 70rem; padding: 1rem 2rem; color: #1d232a; }
header { border-bottom: 1px solid #d0d7de; margin-bottom: 1rem; }
h2 { margin-top: 2rem; text-transform: capitalize; }
details { border: 1px solid #d0d7de; border-radius: 6px; margin: .5rem 0; }
summary { cursor: pointer; padding: .5rem .75rem; font-family: ui-monospace, monospace; }
details > div { padding: 0 1rem 1rem; }
.method { display: inline-block; min-width: 4.5rem; font-weight: 700; }
.get { color: #0969da; } .post { color: #1a7f37; } .put, .patch { color: #9a6700; } .delete { color: #cf222e; }
.summary { font-family: system-ui, sans-serif; color: #57606a; margin-left: 1rem; }
pre { background: #f6f8fa; padding: .75rem; overflow: auto; border-radius: 6px; font-size: 13px; }
table { border-collapse: collapse; } td, th { border-bottom: 1px solid #d0d7de; padding: .25rem .75rem; text-align: left; }
`;

export const DOCS_JS = `// Renders /openapi.json without any third-party code, so the page works offline and under a
// strict Content-Security-Policy (script-src 'self'). Everything is written with textContent.
"use strict";

const el = (tag, attrs = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  for (const child of children) node.append(child);
  return node;
};

function resolve(doc, schema) {
  if (schema && schema.$ref && schema.$ref.startsWith("#/")) {
    return schema.$ref.slice(2).split("/").reduce((node, key) => node?.[key], doc) ?? schema;
  }
  return schema;
}

function schemaBlock(doc, schema) {
  return el("pre", {}, JSON.stringify(resolve(doc, schema), null, 2));
}

function operationView(doc, path, method, op) {
  const body = el("div");
  if (op.description) body.append(el("p", {}, op.description));
  if (op.parameters?.length) {
    const table = el("table", {}, el("tr", {}, el("th", {}, "Parameter"), el("th", {}, "In"), el("th", {}, "Required"), el("th", {}, "Schema")));
    for (const p of op.parameters) {
      table.append(el("tr", {}, el("td", {}, p.name), el("td", {}, p.in), el("td", {}, p.required ? "yes" : "no"), el("td", {}, JSON.stringify(p.schema))));
    }
    body.append(el("h4", {}, "Parameters"), table);
  }
  const requestSchema = op.requestBody?.content?.["application/json"]?.schema;
  if (requestSchema) body.append(el("h4", {}, "Request body (application/json)"), schemaBlock(doc, requestSchema));
  for (const [status, response] of Object.entries(op.responses ?? {})) {
    const r = resolve(doc, response);
    const [type, content] = Object.entries(r.content ?? {})[0] ?? [];
    const heading = (status === "default" ? "Errors" : status) + (r.description ? " — " + r.description : "") + (type ? " (" + type + ")" : "");
    body.append(el("h4", {}, heading));
    if (content?.schema) body.append(schemaBlock(doc, content.schema));
  }
  const summary = el("summary", {}, el("span", { class: "method " + method }, method.toUpperCase()), path, el("span", { class: "summary" }, op.summary ?? ""));
  return el("details", {}, summary, body);
}

async function main() {
  const doc = await (await fetch("openapi.json")).json();
  document.getElementById("meta").textContent = doc.info.title + " " + doc.info.version + " — " + (doc.info.description ?? "");
  const byTag = new Map();
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(item)) {
      const tag = op.tags?.[0] ?? "other";
      if (!byTag.has(tag)) byTag.set(tag, []);
      byTag.get(tag).push(operationView(doc, path, method, op));
    }
  }
  const main = document.getElementById("operations");
  for (const [tag, views] of [...byTag].sort(([a], [b]) => a.localeCompare(b))) main.append(el("h2", {}, tag), ...views);
}

main().catch((error) => {
  document.getElementById("meta").textContent = "Could not load /openapi.json: " + error;
});
`;
