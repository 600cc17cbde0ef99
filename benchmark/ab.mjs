// A/B of one measurement across checkouts, to see a change through a noisy
// machine: fresh process pairs, alternating between the trees each round.
//   node benchmark/ab.mjs <size> <count> <rounds> <tree> <tree> [...]
// e.g. node benchmark/ab.mjs 64 300000 12 ../shmq-before . (each tree built)
import { fork } from 'node:child_process'
import { resolve } from 'node:path'

const [size, count, rounds, ...trees] = process.argv.slice(2)
if (trees.length < 2) {
  console.error('usage: node benchmark/ab.mjs <size> <count> <rounds> <tree> <tree> [...]')
  process.exit(2)
}
const cfg = JSON.stringify({ transport: 'shmq async', mode: 'oneway', size: Number(size), count: Number(count) })
const once = (tree) =>
  new Promise((done, fail) => {
    const child = fork(resolve(tree, 'benchmark/runner.mjs'), [cfg], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] })
    child.on('message', (m) => done(m.messages / m.seconds))
    child.on('exit', (code) => code !== 0 && fail(new Error(`${tree}: runner exited with ${code}`)))
  })
const rates = new Map(trees.map((t) => [t, []]))
for (let r = 0; r < Number(rounds); r++) for (const t of trees) rates.get(t).push(await once(t))
for (const [t, xs] of rates) {
  xs.sort((a, b) => a - b)
  const k = (x) => Math.round(x / 1e3)
  console.log(`${t}: median ${k(xs[xs.length >> 1])} k msg/s (${xs.map(k).join(' ')})`)
}
