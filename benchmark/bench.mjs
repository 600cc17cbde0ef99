// shmq against the alternatives, side by side in one run.
//   node benchmark/bench.mjs [--quick] [--runs N] [--sizes 64,1Ki,...] [--only shmq]
// Each measurement runs in a fresh process pair (runner.mjs + peer.mjs); the
// table shows medians (min–max) and shmq's ratios; results go to benchmark/results/.
import { execFileSync, fork, spawnSync } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import { cpus, totalmem } from 'node:os'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { drawChart } from './chart.mjs'
import { transports } from './transports.mjs'

const { values: opts } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    runs: { type: 'string' },
    sizes: { type: 'string' },
    only: { type: 'string' },
  },
})
const KiB = 1024
const MiB = 1024 * KiB
const GiB = 1024 * MiB
const UNITS = { Ki: KiB, Mi: MiB, Gi: GiB }
const parseSize = (s) => Number(s.replace(/(Ki|Mi|Gi)$/, '')) * (UNITS[s.slice(-2)] ?? 1)
const allSizes = [64, KiB, 64 * KiB, MiB, 16 * MiB, 256 * MiB, GiB]
const sizes = opts.sizes
  ? opts.sizes.split(',').map(parseSize)
  : opts.quick
    ? [64, KiB, 64 * KiB, MiB, 16 * MiB]
    : allSizes
const runs = Number(opts.runs ?? (opts.quick ? 1 : 3))
const names = Object.keys(transports).filter((n) => !opts.only || n.includes(opts.only))
const label = (n) =>
  n >= GiB ? `${n / GiB} GiB` : n >= MiB ? `${n / MiB} MiB` : n >= KiB ? `${n / KiB} KiB` : `${n} B`

/** Messages per measurement: enough bytes to be steady, few enough to be quick. */
function countFor(transport, size) {
  const budget = opts.quick ? 1 * GiB : 4 * GiB
  const cap = opts.quick ? 30_000 : transport.startsWith('ipc') ? 200_000 : 1_000_000
  return Math.max(6, Math.min(cap, Math.floor(budget / size)))
}

function measure(cfg) {
  return new Promise((resolve, reject) => {
    const child = fork(fileURLToPath(new URL('./runner.mjs', import.meta.url)), [JSON.stringify(cfg)], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    })
    let result
    child.on('message', (m) => (result = m))
    const timer = setTimeout(() => child.kill('SIGKILL'), 300_000)
    child.on('exit', (code) => {
      clearTimeout(timer)
      if (code === 0 && result) resolve(result)
      else reject(new Error(`${cfg.transport} ${cfg.mode} ${label(cfg.size)}: runner exited with ${code}`))
    })
  })
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
const progress = (s) => (process.stderr.isTTY ? process.stderr.write(`\r\x1b[K${s}`) : s && console.error(s))

/** Single-core memcpy into warm memory, the ceiling for any copying transport. */
function memcpyGBps(size) {
  const src = Buffer.alloc(size, 1)
  const dst = Buffer.alloc(size)
  src.copy(dst)
  const reps = Math.max(3, Math.min(10_000, Math.floor(GiB / size)))
  const t0 = process.hrtime.bigint()
  for (let i = 0; i < reps; i++) src.copy(dst)
  return (size * reps) / Number(process.hrtime.bigint() - t0)
}

const results = {
  machine: `${cpus().length} × ${cpus()[0].model}, ${Math.round(totalmem() / GiB)} GiB`,
  node: process.version,
  oneway: {},
  rtt: {},
  memcpy: {},
}
const skip = (name, size) => name === 'ipc json' && size > 256 * MiB // a V8 string cannot hold base64 of 1 GiB

/** The native two-copy ceiling (benchmark/ceiling.rs), built with the project's toolchain if it can be. */
const root = fileURLToPath(new URL('..', import.meta.url))
// And the shmq core's own batches (benchmark/core-batch.rs): what the ring
// costs a small message without JavaScript.
const built = spawnSync(
  'cargo',
  ['build', '--release', '--quiet', '--bin', 'shmq-ceiling', '--bin', 'shmq-core-batch'],
  { cwd: root, stdio: 'inherit' },
)
/** Runs a native program of this project: `{ messages, seconds }`, or undefined. */
function native(bin, size, count) {
  if (built.status !== 0) return undefined
  const run = spawnSync(`${root}target/release/${bin}`, [String(size), String(count)], { encoding: 'utf8' })
  return run.status === 0 ? JSON.parse(run.stdout) : undefined
}
results.ceiling = {}
function ceilingGBps(size) {
  const m = native('shmq-ceiling', size, countFor('ceiling', size))
  return m && (m.messages * size) / m.seconds / 1e9
}
const coreSizes = [64, KiB]
results.coreBatch = {}
function coreBatchRate(size) {
  const m = native('shmq-core-batch', size, 5 * countFor('ceiling', size))
  return m && m.messages / m.seconds
}

for (const size of sizes) {
  results.memcpy[size] = memcpyGBps(size)
  results.ceiling[size] = ceilingGBps(size)
  if (coreSizes.includes(size)) results.coreBatch[size] = coreBatchRate(size)
  for (const transport of names) {
    if (skip(transport, size)) continue
    const samples = []
    for (let r = 0; r < runs; r++) {
      progress(`one-way ${label(size)} ${transport} run ${r + 1}/${runs}`)
      const cfg = { transport, mode: 'oneway', size, count: countFor(transport, size) }
      const m = await measure(cfg)
      samples.push({ perSecond: m.messages / m.seconds, rss: m.rss, peerRss: m.peerRss })
    }
    const rates = samples.map((s) => s.perSecond)
    results.oneway[`${transport}|${size}`] = {
      perSecond: median(rates),
      min: Math.min(...rates),
      max: Math.max(...rates),
      rss: Math.max(...samples.map((s) => s.rss)),
      peerRss: Math.max(...samples.map((s) => s.peerRss)),
    }
  }
}
for (const size of [64, 4 * KiB]) {
  for (const transport of names) {
    const samples = []
    for (let r = 0; r < runs; r++) {
      progress(`round trip ${label(size)} ${transport} run ${r + 1}/${runs}`)
      samples.push(
        await measure({
          transport,
          mode: 'rtt',
          size,
          count: opts.quick ? 10_000 : 50_000,
          warmup: opts.quick ? 2_000 : 5_000,
        }),
      )
    }
    results.rtt[`${transport}|${size}`] = {
      p50: median(samples.map((s) => s.p50)),
      p99: median(samples.map((s) => s.p99)),
      max: Math.max(...samples.map((s) => s.max)),
    }
  }
}
// Zero-copy with work: fill and sum every 8-byte word across processes,
// against the same two loops on local memory in a fresh process (as is, and
// after one ArrayBuffer detach: see local-work.mjs).
results.work = {}
const localWork = (size, ...flags) =>
  Number(
    execFileSync(
      process.execPath,
      [fileURLToPath(new URL('./local-work.mjs', import.meta.url)), String(size), ...flags],
      {
        encoding: 'utf8',
      },
    ),
  )
if (!opts.only || 'shmq lease f64'.includes(opts.only)) {
  for (const size of [MiB, 16 * MiB].filter((s) => sizes.includes(s))) {
    progress(`fill + sum ${label(size)}`)
    const m = await measure({ transport: 'shmq lease f64', mode: 'oneway', size, count: countFor('shmq', size) })
    results.work[size] = {
      lease: (m.messages * size) / m.seconds / 1e9,
      local: localWork(size),
      localDetached: localWork(size, '--after-detach'),
    }
  }
}

// Sparse streams: what the consumer's CPU costs when messages are few.
// One measurement is noisy: the median of `runs`, the transports alternating.
results.paced = {}
const pacedRuns = {}
for (let run = 0; run < runs; run++) {
  for (const rate of [1000, 10_000]) {
    for (const transport of names.filter((n) => n === 'shmq async' || n === 'ipc advanced')) {
      progress(`paced ${rate}/s ${transport} (run ${run + 1})`)
      const seconds = opts.quick ? 2 : 5
      const m = await measure({ transport, mode: 'paced', size: KiB, rate, count: rate * seconds })
      const key = `${transport}|${rate}`
      pacedRuns[key] = [...(pacedRuns[key] ?? []), m.cpu]
    }
  }
}
for (const [key, cpus] of Object.entries(pacedRuns)) results.paced[key] = median(cpus)
progress('')

// ---- report ----
const fmtRate = (perSecond, size) =>
  size >= 64 * KiB ? `${((perSecond * size) / 1e9).toFixed(2)} GB/s` : `${(perSecond / 1e3).toFixed(0)} k msg/s`
const lines = []
lines.push(
  `# shmq benchmark`,
  '',
  `Machine: ${results.machine}; Node ${results.node}; ${runs} run(s) per cell, median (min–max); one-way, fresh process pair per run.`,
  '',
)
lines.push(`## One-way throughput`, '')
lines.push(`| transport | ${sizes.map(label).join(' | ')} |`, `|---|${sizes.map(() => '---').join('|')}|`)
for (const t of names) {
  const cells = sizes.map((size) => {
    const r = results.oneway[`${t}|${size}`]
    return r
      ? `${fmtRate(r.perSecond, size)} (${fmtRate(r.min, size).split(' ')[0]}–${fmtRate(r.max, size).split(' ')[0]})`
      : 'n/a'
  })
  lines.push(`| ${t} | ${cells.join(' | ')} |`)
}
lines.push(`| memcpy, one core, warm | ${sizes.map((s) => `${results.memcpy[s].toFixed(1)} GB/s`).join(' | ')} |`)
lines.push(
  `| native two-copy ceiling (benchmark/ceiling.rs) | ${sizes.map((s) => (results.ceiling[s] ? `${results.ceiling[s].toFixed(2)} GB/s` : 'n/a')).join(' | ')} |`,
  `| shmq core alone, batches (benchmark/core-batch.rs) | ${sizes.map((s) => (results.coreBatch[s] ? fmtRate(results.coreBatch[s], s) : 'n/a')).join(' | ')} |`,
  '',
)
const ofCeiling = (t) =>
  sizes.map((s) => {
    const r = results.oneway[`${t}|${s}`]
    return r && results.ceiling[s] ? `${Math.round((100 * r.perSecond * s) / 1e9 / results.ceiling[s])} %` : 'n/a'
  })
lines.push(`| of the native ceiling | ${sizes.map(label).join(' | ')} |`, `|---|${sizes.map(() => '---').join('|')}|`)
for (const t of names.filter((n) => n.startsWith('shmq'))) lines.push(`| ${t} | ${ofCeiling(t).join(' | ')} |`)
lines.push('')
const ratio = (a, b) => (a && b ? `${(a.perSecond / b.perSecond).toFixed(1)}×` : 'n/a')
lines.push(
  `### Ratios (median / median)`,
  '',
  `| shmq vs | ${sizes.map(label).join(' | ')} |`,
  `|---|${sizes.map(() => '---').join('|')}|`,
)
for (const mine of names.filter((n) => n.startsWith('shmq') && n !== 'shmq sync')) {
  for (const other of names.filter((n) => !n.startsWith('shmq') && n !== 'ipc json')) {
    lines.push(
      `| ${mine} / ${other} | ${sizes.map((s) => ratio(results.oneway[`${mine}|${s}`], results.oneway[`${other}|${s}`])).join(' | ')} |`,
    )
  }
}
lines.push(
  '',
  `## Round trip (µs)`,
  '',
  `| transport | 64 B p50 | p99 | max | 4 KiB p50 | p99 | max |`,
  `|---|---|---|---|---|---|---|`,
)
for (const t of names) {
  const a = results.rtt[`${t}|64`]
  const b = results.rtt[`${t}|${4 * KiB}`]
  const f = (r) => (r ? [r.p50, r.p99, r.max].map((x) => x.toFixed(1)).join(' | ') : 'n/a | n/a | n/a')
  lines.push(`| ${t} | ${f(a)} | ${f(b)} |`)
}
if (Object.keys(results.work).length > 0) {
  lines.push(
    '',
    `## Zero-copy with work (producer fills a Float64Array, consumer sums it)`,
    '',
    `| size | shmq lease | same loops, local memory, one process | ratio | same, after one ArrayBuffer detach | ratio |`,
    `|---|---|---|---|---|---|`,
  )
  for (const [size, w] of Object.entries(results.work)) {
    lines.push(
      `| ${label(Number(size))} | ${w.lease.toFixed(2)} GB/s | ${w.local.toFixed(2)} GB/s | ${Math.round((100 * w.lease) / w.local)} % | ${w.localDetached.toFixed(2)} GB/s | ${Math.round((100 * w.lease) / w.localDetached)} % |`,
    )
  }
}
lines.push(
  '',
  `## Sparse streams: consumer CPU (% of one core; 1 KiB messages, a burst each millisecond)`,
  '',
  `| transport | 1,000 msg/s | 10,000 msg/s |`,
  `|---|---|---|`,
)
for (const t of names.filter((n) => n === 'shmq async' || n === 'ipc advanced')) {
  lines.push(
    `| ${t} | ${[1000, 10_000].map((r) => `${(100 * results.paced[`${t}|${r}`]).toFixed(1)} %`).join(' | ')} |`,
  )
}
lines.push(
  '',
  `## Peak RSS (MiB, consumer / producer)`,
  '',
  `| transport | ${sizes.map(label).join(' | ')} |`,
  `|---|${sizes.map(() => '---').join('|')}|`,
)
for (const t of names) {
  lines.push(
    `| ${t} | ${sizes
      .map((s) => {
        const r = results.oneway[`${t}|${s}`]
        return r ? `${Math.round(r.rss / MiB)} / ${Math.round(r.peerRss / MiB)}` : 'n/a'
      })
      .join(' | ')} |`,
  )
}
const markdown = `${lines.join('\n')}\n`
const out = fileURLToPath(new URL('./results/', import.meta.url))
mkdirSync(out, { recursive: true })
writeFileSync(`${out}results.md`, markdown)
writeFileSync(`${out}results.json`, JSON.stringify(results, null, 2))
await drawChart(results)
console.log(markdown)
console.log(`written to benchmark/results/results.md, results.json and throughput.svg`)
