// The producer / echo side of one measurement (forked by runner.mjs).
import { peakRss } from './rss.mjs'
import { extraTransports, transports } from './transports.mjs'

const cfg = JSON.parse(process.argv[2])
cfg.peerArgs = process.argv.slice(3)
const t = transports[cfg.transport] ?? extraTransports[cfg.transport]
if (cfg.mode === 'oneway' || cfg.mode === 'paced') {
  // A zero-copy producer writes in place: it has no message of its own.
  const message = t.inPlace ? undefined : Buffer.alloc(cfg.size, 0x5a)
  await t.send(cfg, message)
} else {
  await t.echo(cfg)
}
if (process.connected) process.send({ peerRss: peakRss() })
