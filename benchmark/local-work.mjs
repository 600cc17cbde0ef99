// The work of the `shmq lease f64` row on local memory, in a fresh process:
// fill a Float64Array and sum it. Prints GB/s.
//   node benchmark/local-work.mjs <size> [--after-detach]
// --after-detach first detaches one ArrayBuffer, as releasing a lease or
// committing a reservation does: from then on V8's optimized code checks for
// detached buffers in every typed-array access (its "array buffer detaching
// protector" is gone for the whole isolate), which slows such loops.
const size = Number(process.argv[2])
if (process.argv.includes('--after-detach')) {
  const b = new ArrayBuffer(8)
  structuredClone(b, { transfer: [b] })
}
const a = new Float64Array(size / 8)
let total = 0
const reps = Math.max(3, Math.min(200, Math.floor(2 ** 30 / size)))
const t0 = process.hrtime.bigint()
for (let r = 0; r < reps; r++) {
  a.fill(r)
  for (let j = 0; j < a.length; j++) total += a[j]
}
if (Number.isNaN(total)) throw new Error('bad sum')
console.log((size * reps) / Number(process.hrtime.bigint() - t0))
