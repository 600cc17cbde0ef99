// Loads the native addon: a locally built `shmq.<platform>.node`, else the
// prebuilt `shmq-<platform>` package npm chose for this machine.
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
  for (const id of [`../shmq.${suffix}.node`, `shmq-${suffix}`]) {
    try {
      return require(id) as Binding
    } catch (e) {
      tried.push(`${id}: ${e instanceof Error ? e.message.split('\n')[0] : String(e)}`)
    }
  }
  throw new ShmqError(
    'ERR_SHMQ_UNSUPPORTED_PLATFORM',
    `shmq has no native addon for ${suffix}. Linux x64 (glibc) is built and tested; on other platforms ` +
      `build from source with a Rust toolchain (npm install --build-from-source) or use another transport. Tried:\n  ` +
      tried.join('\n  '),
  )
}

export const binding: Binding = load()
