// Copy the third-party front-end files the panel uses from node_modules/ into
// static/vendor/ (git-ignored). Run by `npm ci` (postinstall) and `npm run vendor`.
import { cpSync, existsSync, mkdirSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const modules = join(root, "node_modules");
const dest = join(root, "static", "vendor");

// [source under node_modules/, destination under static/vendor/]
const files = [
  ["bootstrap/dist/css/bootstrap.min.css", "bootstrap/bootstrap.min.css"],
  ["bootstrap/dist/css/bootstrap.min.css.map", "bootstrap/bootstrap.min.css.map"],
  ["bootstrap/dist/js/bootstrap.bundle.min.js", "bootstrap/bootstrap.bundle.min.js"],
  ["bootstrap/dist/js/bootstrap.bundle.min.js.map", "bootstrap/bootstrap.bundle.min.js.map"],
  ["bootstrap-icons/font/bootstrap-icons.min.css", "bootstrap-icons/bootstrap-icons.min.css"],
  ["bootstrap-icons/font/fonts", "bootstrap-icons/fonts"],
  ["htmx.org/dist/htmx.min.js", "htmx/htmx.min.js"],
  ["uplot/dist/uPlot.iife.min.js", "uplot/uPlot.iife.min.js"],
  ["uplot/dist/uPlot.min.css", "uplot/uPlot.min.css"],
];

const missing = files.filter(([src]) => !existsSync(join(modules, src)));
if (missing.length) {
  console.error("vendor: missing in node_modules/ (run `npm ci` first):");
  for (const [src] of missing) console.error("  " + src);
  process.exit(1);
}

rmSync(dest, { recursive: true, force: true });
for (const [src, dst] of files) {
  const target = join(dest, dst);
  mkdirSync(dirname(target), { recursive: true });
  cpSync(join(modules, src), target, { recursive: true });
}
console.log(`vendor: copied ${files.length} entries into static/vendor/`);
