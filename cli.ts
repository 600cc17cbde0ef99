#!/usr/bin/env node
// npx shmq ls [--json]   list queues in /dev/shm
// npx shmq gc [--force]  list queues no live process uses; --force removes them
import { binding } from './lib/binding'

const [command, ...flags] = process.argv.slice(2)

function bytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let i = 0
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024
    i++
  }
  return `${i === 0 ? n : n.toFixed(1)} ${units[i]}`
}

if (command === 'ls') {
  const queues = binding.listQueues()
  if (flags.includes('--json')) {
    console.log(JSON.stringify(queues, null, 2))
  } else if (queues.length === 0) {
    console.log('no shmq queues in /dev/shm')
  } else {
    const rows = queues.map((q) => [
      q.name,
      q.status,
      String(q.capacity),
      String(q.depth),
      String(q.senders),
      String(q.receivers),
      q.pids.join(',') || '-',
      bytes(q.bytes),
    ])
    const header = ['NAME', 'STATUS', 'CAPACITY', 'DEPTH', 'SENDERS', 'RECEIVERS', 'PIDS', 'BYTES']
    const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)))
    for (const row of [header, ...rows]) console.log(row.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd())
  }
} else if (command === 'gc') {
  const force = flags.includes('--force')
  const names = binding.collectGarbage(force, force)
  if (names.length === 0) console.log('nothing to remove')
  for (const name of names) console.log(`${force ? 'removed' : 'would remove'} ${name}`)
  if (!force && names.length > 0) console.log('run `shmq gc --force` to remove them')
} else {
  console.log('usage: shmq ls [--json] | shmq gc [--force]')
  process.exitCode = command === undefined || command === '--help' ? 0 : 2
}
