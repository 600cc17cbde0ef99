// Peak RSS of this process image: VmHWM from /proc/self/status. (getrusage's
// maxRSS also counts the pre-exec image, i.e. the forking parent's RSS: the
// benchmark driver holds two buffers of the message size when it forks.)
import { readFileSync } from 'node:fs'

export function peakRss() {
  const kib = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync('/proc/self/status', 'utf8'))
  return kib ? Number(kib[1]) * 1024 : process.resourceUsage().maxRSS * 1024
}
