// Loads the native addon: the prebuilt `shmq-<platform>` package npm chose for
// this machine, else a locally built `shmq.<platform>.node` at the package
// root (a source checkout; this file runs from dist/lib/).
import { join } from 'node:path'
import type * as Native from '../native'
import { ShmqError } from './errors'

export type Binding = typeof Native

function platformSuffix(): string {
  const { platform, arch } = process
  if (platform === 'linux') {
    const report = process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined
    return `linux-${arch}-${report?.header?.glibcVersionRuntime ? 'gnu' : 'musl'}`
  }
  return `${platform}-${arch}`
}

function load(): Binding {
  const suffix = platformSuffix()
  const tried: string[] = []
  for (const id of [`shmq-${suffix}`, join(__dirname, '..', '..', `shmq.${suffix}.node`)]) {
    try {
      return require(id) as Binding
    } catch (e) {
      tried.push(`${id}: ${e instanceof Error ? e.message.split('\n')[0] : String(e)}`)
    }
  }
  throw new ShmqError(
    'ERR_SHMQ_UNSUPPORTED_PLATFORM',
    `shmq has no native addon for ${suffix}. Prebuilt addons exist for Linux (x64 and arm64, glibc and musl); ` +
      `the macOS and Windows backends are not written yet. On Linux, reinstall without --omit=optional, or build ` +
      `from a source checkout (npm install there needs a Rust toolchain). Tried:\n  ` +
      tried.join('\n  '),
  )
}

export const binding: Binding = load()
