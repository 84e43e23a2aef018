// `import text from "x.service" with { type: "text" }` gives the file's text (embedded by bun build --compile).
declare module "*.service" {
  const text: string;
  export default text;
}
