// Self time by function (and by file) of a .cpuprofile from `node --cpu-prof`, highest first.
//   npx tsx bench/profile-summary.ts <file.cpuprofile> [top=40]
import { readFileSync } from 'node:fs';

interface Node { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; children?: number[] }
const profile = JSON.parse(readFileSync(process.argv[2] ?? '', 'utf8')) as { nodes: Node[]; samples: number[]; timeDeltas: number[] };
const top = Number(process.argv[3] ?? 40);
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const self = new Map<number, number>();
profile.samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)));
const total = [...self.values()].reduce((a, b) => a + b, 0);
const fn = new Map<string, number>();
const file = new Map<string, number>();
for (const [id, us] of self) {
  const f = byId.get(id)?.callFrame;
  if (f === undefined) continue;
  const where = f.url.replace(/^.*\/(node_modules\/[^/]+|src|bench)\//, '$1/') || '(native)';
  fn.set(`${f.functionName || '(anonymous)'} ${where}:${f.lineNumber + 1}`, (fn.get(`${f.functionName || '(anonymous)'} ${where}:${f.lineNumber + 1}`) ?? 0) + us);
  const group = where.startsWith('node_modules/') ? where.split('/').slice(0, 2).join('/') : where.startsWith('src/') ? where : where.startsWith('node:') ? 'node internals' : where;
  file.set(group, (file.get(group) ?? 0) + us);
}
const pct = (us: number): string => `${((us / total) * 100).toFixed(1).padStart(5)}%`;
console.log(`total ${(total / 1000).toFixed(0)} ms sampled`);
console.log('\nby file:');
for (const [k, v] of [...file].sort((a, b) => b[1] - a[1]).slice(0, 25)) console.log(`${pct(v)}  ${k}`);
console.log('\nby function:');
const fns = [...fn].sort((a, b) => b[1] - a[1]).slice(0, top);
for (const [k, v] of fns) console.log(`${pct(v)}  ${k}`);
