// Loads the native addon once, when shmq is imported, and never throws there:
// on a platform without a backend, or when no addon loads, `binding` is a
// stand-in whose calls throw ShmqError ERR_SHMQ_UNSUPPORTED_PLATFORM, so the
// first queue created or attached fails instead of the import.
//
// Where the addon comes from, first that loads:
// - SHMQ_NATIVE_PATH, else NAPI_RS_NATIVE_LIBRARY_PATH (napi-rs's name): that
//   file and nothing else;
// - shmq.<platform>.node at the package root (a source checkout's build);
// - the shmq-<platform> package npm installed from optionalDependencies.
// <platform> is linux-<arch>-<gnu|musl>, the libc found as napi-rs's
// generated loader finds it (isMusl below).
import { execSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import type * as Native from '../native'
import { ShmqError } from './errors'

/** @internal */
export type Binding = typeof Native

/** Platforms with a shared-memory backend (src/ is Linux-only: futexes, /dev/shm). */
const BACKENDS: readonly string[] = ['linux']
/** Where prebuilt addons are published (npm/*). */
const PREBUILT = 'Linux x64 and arm64, glibc and musl'

const isFileMusl = (f: string): boolean => f.includes('libc.musl-') || f.includes('ld-musl-')

function isMuslFromFilesystem(): boolean | null {
  try {
    return readFileSync('/usr/bin/ldd', 'utf-8').includes('musl')
  } catch {
    return null
  }
}

function isMuslFromReport(): boolean | null {
  // excludeNetwork: Node >= 20.13, not in @types/node 20.
  const report = process.report as (NodeJS.ProcessReport & { excludeNetwork?: boolean }) | undefined
  if (typeof report?.getReport !== 'function') return null
  // As napi-rs does, skip the report's network section (reverse DNS can be
  // slow); unlike it, put the user's setting back.
  const excludeNetwork = report.excludeNetwork
  let got: { header?: { glibcVersionRuntime?: string }; sharedObjects?: unknown }
  try {
    report.excludeNetwork = true
    got = report.getReport() as typeof got
  } catch {
    return null
  } finally {
    report.excludeNetwork = excludeNetwork
  }
  if (got?.header?.glibcVersionRuntime) return false
  return Array.isArray(got?.sharedObjects) && got.sharedObjects.some((f) => typeof f === 'string' && isFileMusl(f))
}

function isMuslFromChildProcess(): boolean {
  try {
    return execSync('ldd --version', { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).includes('musl')
  } catch {
    return false
  }
}

/** napi-rs's order: /usr/bin/ldd, then process.report, then `ldd --version`. */
function isMusl(): boolean {
  return isMuslFromFilesystem() ?? isMuslFromReport() ?? isMuslFromChildProcess()
}

function firstLine(e: unknown): string {
  return e instanceof Error ? e.message.split('\n')[0] : String(e)
}

type Loaded = { binding: Binding; reason?: undefined } | { binding?: undefined; reason: string }

function load(): Loaded {
  // Read now, at load time: a test may fake process.platform before requiring.
  const { platform, arch } = process
  if (!BACKENDS.includes(platform)) {
    return {
      reason:
        `shmq has no backend for ${platform}-${arch}: it runs on Linux only for now (the macOS and Windows ` +
        `backends are not written yet), so it cannot create or attach a queue here. Check isSupported() and ` +
        `use another transport on this platform (worker_threads, child_process IPC), or run this on Linux.`,
    }
  }
  const suffix = `${platform}-${arch}-${isMusl() ? 'musl' : 'gnu'}`
  const override = process.env.SHMQ_NATIVE_PATH
    ? 'SHMQ_NATIVE_PATH'
    : process.env.NAPI_RS_NATIVE_LIBRARY_PATH
      ? 'NAPI_RS_NATIVE_LIBRARY_PATH'
      : undefined
  const candidates = override
    ? [resolve(process.env[override] as string)]
    : [join(__dirname, '..', '..', `shmq.${suffix}.node`), `shmq-${suffix}`]
  const tried: string[] = []
  for (const id of candidates) {
    try {
      return { binding: require(id) as Binding }
    } catch (e) {
      tried.push(`${id}: ${firstLine(e)}`)
    }
  }
  const fix = override
    ? `${override} names an addon that did not load: point it at a shmq.${suffix}.node built from this version, or unset it.`
    : `Prebuilt addons exist for ${PREBUILT}: reinstall shmq without --omit=optional (or --no-optional) so npm ` +
      `installs shmq-${suffix}, set SHMQ_NATIVE_PATH to a shmq.${suffix}.node, or build from a source checkout ` +
      `(npm install there needs a Rust toolchain).`
  return { reason: `shmq could not load its native addon for ${suffix}. ${fix} Tried:\n  ${tried.join('\n  ')}` }
}

/** Stands in for the addon: queue calls throw; cleanup calls have nothing to clean. */
function unavailable(reason: string): Binding {
  const fail = (): never => {
    throw new ShmqError('ERR_SHMQ_UNSUPPORTED_PLATFORM', reason)
  }
  const nothing = (): void => {}
  const quiet = new Set<string | symbol>(['releaseLingering', 'endFree'])
  return new Proxy({} as Binding, {
    get(_, name) {
      if (typeof name === 'symbol' || name === 'then') return undefined
      if (quiet.has(name)) return nothing
      // Called once when index loads; its functions fail when used.
      if (name === 'hotPath') {
        return () => ({
          put: fail,
          putString: fail,
          get: fail,
          lastTag: fail,
          event: fail,
          spin: fail,
          reserve: fail,
          lease: fail,
          commit: fail,
          abort: fail,
          release: fail,
          held: new Uint32Array(2),
        })
      }
      return fail
    },
  })
}

const loaded = load()

/** @internal The addon, or a stand-in that throws ERR_SHMQ_UNSUPPORTED_PLATFORM. */
export const binding: Binding = loaded.binding ?? unavailable(loaded.reason)

/** @internal The per-message calls as raw native callbacks (put, get, zero-copy). */
export const hot = binding.hotPath()

/**
 * True when this platform has a shmq backend and the native addon loaded:
 * queues can be created and attached. When false, doing so throws a
 * `ShmqError` with code `ERR_SHMQ_UNSUPPORTED_PLATFORM` whose message says why.
 */
export function isSupported(): boolean {
  return loaded.binding !== undefined
}
