// The ceiling for any transport whose receiver gets a value of its own:
// copying into memory that was just allocated (page faults, zeroing) versus
// into memory that is already faulted in. One process, one core.
//   node benchmark/fresh-memory.mjs
const MiB = 1024 * 1024
const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1]
console.log('| size | into warm memory | into a fresh Buffer |\n|---|---|---|')
for (const size of [64 * 1024, MiB, 16 * MiB, 256 * MiB, 1024 * MiB]) {
  const src = Buffer.alloc(size, 1)
  const reps = Math.max(3, Math.min(200, Math.floor((2048 * MiB) / size)))
  const warm = Buffer.alloc(size)
  src.copy(warm)
  const warmRates = []
  const freshRates = []
  for (let i = 0; i < reps; i++) {
    let t = process.hrtime.bigint()
    src.copy(warm)
    warmRates.push(size / Number(process.hrtime.bigint() - t))
    t = process.hrtime.bigint()
    const fresh = Buffer.allocUnsafeSlow(size)
    src.copy(fresh)
    freshRates.push(size / Number(process.hrtime.bigint() - t))
  }
  const label =
    size >= 1024 * MiB ? `${size / 1024 / MiB} GiB` : size >= MiB ? `${size / MiB} MiB` : `${size / 1024} KiB`
  console.log(`| ${label} | ${median(warmRates).toFixed(1)} GB/s | ${median(freshRates).toFixed(2)} GB/s |`)
}
