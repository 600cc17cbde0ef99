// Draws benchmark/results/throughput.svg from results.json with Vega-Lite:
// one-way throughput by message size, one line per transport (log scales).
//   node benchmark/chart.mjs   (bench.mjs runs it after every run)
import { readFileSync, writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import * as vega from 'vega'
import { compile } from 'vega-lite'

const dir = fileURLToPath(new URL('./results/', import.meta.url))

export async function drawChart(results = JSON.parse(readFileSync(`${dir}results.json`, 'utf8'))) {
  const values = Object.entries(results.oneway).map(([key, r]) => {
    const [transport, size] = key.split('|')
    return {
      transport,
      size: Number(size),
      gbps: (r.perSecond * Number(size)) / 1e9,
      min: (r.min * Number(size)) / 1e9,
      max: (r.max * Number(size)) / 1e9,
    }
  })
  for (const [size, gbps] of Object.entries(results.memcpy)) {
    if (Number(size) >= 65536)
      values.push({ transport: 'memcpy (one core, warm)', size: Number(size), gbps, min: gbps, max: gbps })
  }
  const spec = {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: {
      text: 'One-way throughput between two Node.js processes',
      subtitle: `${results.machine}; Node ${results.node}; median of runs`,
    },
    width: 640,
    height: 380,
    data: { values },
    encoding: {
      x: {
        field: 'size',
        type: 'quantitative',
        scale: { type: 'log', base: 2 },
        title: 'message size (bytes)',
        axis: {
          labelExpr:
            "datum.value >= 1073741824 ? datum.value / 1073741824 + ' GiB' : datum.value >= 1048576 ? datum.value / 1048576 + ' MiB' : datum.value >= 1024 ? datum.value / 1024 + ' KiB' : datum.value + ' B'",
        },
      },
      color: { field: 'transport', type: 'nominal', title: null, legend: { labelLimit: 320 } },
    },
    layer: [
      {
        mark: { type: 'line', point: true },
        encoding: { y: { field: 'gbps', type: 'quantitative', scale: { type: 'log' }, title: 'GB/s' } },
      },
      {
        mark: { type: 'errorbar' },
        encoding: { y: { field: 'min', type: 'quantitative', title: 'GB/s' }, y2: { field: 'max' } },
      },
    ],
  }
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none' })
  const svg = await view.toSVG()
  writeFileSync(`${dir}throughput.svg`, svg)
  return `${dir}throughput.svg`
}

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(`written to ${await drawChart()}`)
