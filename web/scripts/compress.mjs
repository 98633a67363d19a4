// Writes dist/<file>.gz for every file of build/ (gzip level 9; Node's gzip header carries
// no timestamp, so the output is byte-for-byte reproducible) and checks the size budget.
import { gzipSync, constants } from 'node:zlib';
import { readdirSync, readFileSync, writeFileSync, mkdirSync, rmSync, statSync } from 'node:fs';
import { join, dirname, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const BUDGET = 150 * 1024;
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const from = join(root, 'build');
const to = join(root, 'dist');

function walk(dir) {
  return readdirSync(dir)
    .sort()
    .flatMap((name) => {
      const p = join(dir, name);
      return statSync(p).isDirectory() ? walk(p) : [p];
    });
}

rmSync(to, { recursive: true, force: true });
let total = 0;
for (const file of walk(from)) {
  const name = relative(from, file);
  const gz = gzipSync(readFileSync(file), { level: constants.Z_BEST_COMPRESSION });
  const out = join(to, `${name}.gz`);
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, gz);
  total += gz.length;
  console.log(`${String(gz.length).padStart(8)}  ${name}.gz`);
}
console.log(`${String(total).padStart(8)}  total gzipped (budget ${BUDGET})`);
if (total > BUDGET) {
  console.error(`the dashboard is ${total} bytes gzipped, over the budget of ${BUDGET}`);
  process.exit(1);
}
