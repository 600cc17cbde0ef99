// One measurement in a fresh process pair: this process consumes (or pings),
// its forked peer produces (or echoes). Reports timings and peak RSS.
import { fork } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import { peakRss } from './rss.mjs'
import { extraTransports, transports } from './transports.mjs'

const cfg = JSON.parse(process.argv[2])
const t = transports[cfg.transport] ?? extraTransports[cfg.transport]
let peerRss = 0
const forkPeer = (args) => {
  const peer = fork(fileURLToPath(new URL('./peer.mjs', import.meta.url)), [JSON.stringify(cfg), ...args], {
    serialization: t.serialization ?? 'json',
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  })
  // Listen for the exit now: the peer may finish before the consumer looks.
  peer.exited = once(peer, 'exit')
  peer.on('message', (m) => {
    if (m && typeof m === 'object' && 'peerRss' in m) peerRss = m.peerRss
  })
  return peer
}

let result
if (cfg.mode === 'paced') {
  // CPU of this (consuming) process from the first message to the last.
  let first = 0n
  let cpu
  let n = 0
  const onMessage = () => {
    if (n === 0) {
      first = process.hrtime.bigint()
      cpu = process.cpuUsage()
    }
    if (++n === cfg.count) {
      const used = process.cpuUsage(cpu)
      const seconds = Number(process.hrtime.bigint() - first) / 1e9
      result = { cpu: (used.user + used.system) / 1e6 / seconds, seconds }
    }
  }
  await t.receive(cfg, forkPeer, onMessage)
} else if (cfg.mode === 'oneway') {
  // Touch one byte per 4 KiB page of every message, as a consumer would.
  let first = 0n
  let last = 0n
  let n = 0
  let sink = 0
  // Only the first and the last arrival are timed (a clock read per message
  // would be a good part of a 64-byte message's cost).
  const onMessage = (m) => {
    if (n === 0) first = process.hrtime.bigint()
    for (let i = 0; i < m.length; i += 4096) sink ^= m[i]
    if (m.length !== cfg.size) throw new Error(`got ${m.length} bytes, expected ${cfg.size}`)
    if (++n === cfg.count) last = process.hrtime.bigint()
  }
  await t.receive(cfg, forkPeer, onMessage)
  // From the first arrival to the last: n - 1 messages in steady state.
  const seconds = Number(last - first) / 1e9
  result = { seconds, messages: n - 1, sink }
} else {
  const message = Buffer.alloc(cfg.size, 0x5a)
  const times = Array.from(await t.ping(cfg, forkPeer, message)).sort((a, b) => a - b)
  const at = (q) => times[Math.min(times.length - 1, Math.floor(q * times.length))] / 1000
  result = { p50: at(0.5), p99: at(0.99), max: times[times.length - 1] / 1000 }
}
// Give the peer's last message a moment to arrive.
await new Promise((r) => setTimeout(r, 20))
process.send({ ...result, rss: peakRss(), peerRss })
