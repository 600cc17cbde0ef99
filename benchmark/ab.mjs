// A/B of one measurement across checkouts (and transports), to see a change
// through a noisy machine: fresh process pairs, alternating each round.
//   node benchmark/ab.mjs [--transports a,b] <size> <count> <rounds> <tree> [...]
// e.g. node benchmark/ab.mjs 64 300000 12 ../shmq-before . (each tree built)
//      node benchmark/ab.mjs --transports 'shmq lease,ipc advanced' 65536 100000 5 .
import { fork } from 'node:child_process'
import { resolve } from 'node:path'

const args = process.argv.slice(2)
let transports = ['shmq async']
if (args[0] === '--transports') transports = args.splice(0, 2)[1].split(',')
const [size, count, rounds, ...trees] = args
if (trees.length < 1 || trees.length * transports.length < 2) {
  console.error('usage: node benchmark/ab.mjs [--transports a,b] <size> <count> <rounds> <tree> [...]')
  process.exit(2)
}
const once = (tree, transport) =>
  new Promise((done, fail) => {
    const cfg = JSON.stringify({ transport, mode: 'oneway', size: Number(size), count: Number(count) })
    const child = fork(resolve(tree, 'benchmark/runner.mjs'), [cfg], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] })
    child.on('message', (m) => done(m.messages / m.seconds))
    child.on('exit', (code) => code !== 0 && fail(new Error(`${tree}: runner exited with ${code}`)))
  })
const cases = trees.flatMap((tree) => transports.map((transport) => [tree, transport]))
const rates = new Map(cases.map((c) => [c.join(' · '), []]))
for (let r = 0; r < Number(rounds); r++) for (const c of cases) rates.get(c.join(' · ')).push(await once(...c))
for (const [c, xs] of rates) {
  xs.sort((a, b) => a - b)
  const k = (x) => (x < 1e4 ? (x / 1e3).toFixed(2) : Math.round(x / 1e3))
  console.log(`${c}: median ${k(xs[xs.length >> 1])} k msg/s (${xs.map(k).join(' ')})`)
}
