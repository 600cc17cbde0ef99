#!/usr/bin/env node
// npx shmq ls [--json] [--watch [--interval <ms>]]   list queues in /dev/shm
// npx shmq gc [--force]  list queues no live process uses; --force removes them
import { parseArgs } from 'node:util'
import { setTimeout as sleep } from 'node:timers/promises'
import type { QueueInfo } from './native'
import { binding } from './lib/binding'

const USAGE = `usage: shmq <command> [options]

commands:
  ls     list the shmq queues in /dev/shm: name, status, capacity, depth
         (messages waiting), senders, receivers, pids, bytes of shared memory
  gc     list the queues no live process uses (a dry run)
  help   print this help (also: shmq help <command>, shmq <command> --help)

options:
  --json            ls: print JSON (with --watch, one JSON line per refresh)
  -w, --watch       ls: refresh until Ctrl-C (SIGINT) or SIGTERM, adding RATE
                    (messages sent per second since the previous refresh)
  --interval <ms>   ls --watch: milliseconds between refreshes (default 1000)
  --force           gc: remove those queues
  -h, --help        print this help

exit status: 0 on success, 2 on a usage error`

const OPTIONS = {
  help: { type: 'boolean', short: 'h' },
  json: { type: 'boolean' },
  watch: { type: 'boolean', short: 'w' },
  interval: { type: 'string' },
  force: { type: 'boolean' },
} as const

type Option = keyof typeof OPTIONS

/** The options each command takes (help: all of them). */
const COMMANDS = new Map<string, readonly Option[]>([
  ['ls', ['help', 'json', 'watch', 'interval']],
  ['gc', ['help', 'force']],
  ['help', ['help']],
])

const MAX_TIMEOUT = 2 ** 31 - 1 // setTimeout fires at once past this

class UsageError extends Error {}

interface Command {
  name: string // 'help' also for --help and -h
  json: boolean
  watch: boolean
  interval: number
  force: boolean
}

function parse(argv: string[]): Command {
  const parse = () => parseArgs({ args: argv, options: OPTIONS, strict: true, allowPositionals: true, tokens: true })
  let parsed: ReturnType<typeof parse>
  try {
    parsed = parse()
  } catch (e) {
    // Node's hint about '--' does not apply: no command takes a positional.
    throw new UsageError(e instanceof Error ? e.message.replace(/\. To specify a positional .*$/s, '') : String(e))
  }
  const { values, positionals, tokens } = parsed
  const [name, ...stray] = positionals
  if (name === undefined) {
    if (values.help) return { name: 'help', json: false, watch: false, interval: 1000, force: false }
    throw new UsageError('no command given')
  }
  const allowed = COMMANDS.get(name)
  if (allowed === undefined) throw new UsageError(`unknown command '${name}'`)
  const helpOn = name === 'help' && stray.length === 1 && COMMANDS.has(stray[0]) // shmq help ls
  if (stray.length > 0 && !helpOn) throw new UsageError(`unexpected argument '${stray[0]}' after '${name}'`)
  for (const token of tokens) {
    if (token.kind === 'option' && !allowed.includes(token.name as Option)) {
      throw new UsageError(`'${name}' takes no option '${token.rawName}'`)
    }
  }
  let interval = 1000
  if (values.interval !== undefined) {
    if (!values.watch) throw new UsageError("'--interval' needs '--watch'")
    interval = Number(values.interval)
    if (!/^\d+$/.test(values.interval) || interval < 1 || interval > MAX_TIMEOUT) {
      throw new UsageError(`'--interval' takes whole milliseconds from 1 to ${MAX_TIMEOUT}, not '${values.interval}'`)
    }
  }
  return {
    name: values.help ? 'help' : name,
    json: values.json ?? false,
    watch: values.watch ?? false,
    interval,
    force: values.force ?? false,
  }
}

function bytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let i = 0
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024
    i++
  }
  return `${i === 0 ? n : n.toFixed(1)} ${units[i]}`
}

/** A queue as `ls --watch` shows it: messages sent per second since the previous refresh (null on the first). */
type Watched = QueueInfo & { rate: number | null }

function table(queues: (QueueInfo | Watched)[], withRate: boolean): string {
  if (queues.length === 0) return 'no shmq queues in /dev/shm\n'
  const header = ['NAME', 'STATUS', 'CAPACITY', 'DEPTH', 'SENDERS', 'RECEIVERS', 'PIDS', 'BYTES']
  if (withRate) header.push('RATE')
  const rows = queues.map((q) => {
    const row = [
      q.name,
      q.status,
      String(q.capacity),
      String(q.depth),
      String(q.senders),
      String(q.receivers),
      q.pids.join(',') || '-',
      bytes(q.bytes),
    ]
    if (withRate) {
      const rate = 'rate' in q ? q.rate : null
      row.push(rate === null ? '-' : `${rate < 100 ? rate.toFixed(1) : Math.round(rate)}/s`)
    }
    return row
  })
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)))
  return [header, ...rows]
    .map(
      (row) =>
        `${row
          .map((c, i) => c.padEnd(widths[i]))
          .join('  ')
          .trimEnd()}\n`,
    )
    .join('')
}

function ls(json: boolean): void {
  const queues = binding.listQueues()
  if (json) console.log(JSON.stringify(queues, null, 2))
  else process.stdout.write(table(queues, false))
}

/** Lists the queues every `interval` ms until SIGINT or SIGTERM. */
async function watch(json: boolean, interval: number): Promise<void> {
  const stop = new AbortController()
  const onSignal = () => stop.abort()
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  // `shmq ls --watch | head`: a closed pipe ends the watch quietly.
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code !== 'EPIPE') throw e
    stop.abort()
  })
  const tty = process.stdout.isTTY === true && !json
  let previous = new Map<string, { sent: number; at: number }>()
  while (!stop.signal.aborted) {
    const at = performance.now()
    const now = new Date()
    const seen = new Map<string, { sent: number; at: number }>()
    const queues: Watched[] = binding.listQueues().map((q) => {
      let rate: number | null = null
      const before = previous.get(q.name)
      if (q.sent !== null) {
        seen.set(q.name, { sent: q.sent, at })
        if (before !== undefined && q.sent >= before.sent && at > before.at) {
          rate = Math.round(((q.sent - before.sent) / ((at - before.at) / 1000)) * 100) / 100
        }
      }
      return { ...q, rate }
    })
    previous = seen
    let out: string
    if (json) out = `${JSON.stringify({ time: now.toISOString(), queues })}\n`
    else if (tty) {
      // Cursor home, clear screen: the table is redrawn in place.
      out = `\x1b[H\x1b[2J${now.toLocaleTimeString()}  shmq ls, every ${interval} ms (Ctrl-C to stop)\n\n${table(queues, true)}`
    } else out = `--- ${now.toISOString()}\n${table(queues, true)}`
    process.stdout.write(out)
    try {
      await sleep(interval, undefined, { signal: stop.signal })
    } catch {
      // Aborted: SIGINT, SIGTERM or a closed stdout.
    }
  }
  process.off('SIGINT', onSignal)
  process.off('SIGTERM', onSignal)
}

function gc(force: boolean): void {
  const names = binding.collectGarbage(force, force)
  if (names.length === 0) console.log('nothing to remove')
  for (const name of names) console.log(`${force ? 'removed' : 'would remove'} ${name}`)
  if (!force && names.length > 0) console.log('run `shmq gc --force` to remove them')
}

async function main(argv: string[]): Promise<number> {
  let command: Command
  try {
    command = parse(argv)
  } catch (e) {
    if (!(e instanceof UsageError)) throw e
    process.stderr.write(`shmq: ${e.message}\n\n${USAGE}\n`)
    return 2
  }
  if (command.name === 'help') console.log(USAGE)
  else if (command.name === 'ls' && command.watch) await watch(command.json, command.interval)
  else if (command.name === 'ls') ls(command.json)
  else gc(command.force)
  return 0
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code
  },
  (e: unknown) => {
    process.stderr.write(`shmq: ${e instanceof Error ? e.message : String(e)}\n`)
    process.exitCode = 1
  },
)
