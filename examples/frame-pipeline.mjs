// A video-style frame pipeline to a `child_process.fork` child, zero-copy.
//
//   node examples/frame-pipeline.mjs
//
// The parent draws 60 frames of 1920x1080 RGB (about 6 MiB each) straight
// into shared memory with reserve()/commit(): no copy on the way in. The
// child (this same file, forked with the argument `child`) reads each frame
// in place with lease()/release(): no copy on the way out either. It measures
// the frame's mean brightness and sends that small result back on a second
// queue with an ordinary put(). The parent checks every result, prints one
// line and exits 0 (1 on failure).
import { fork } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { createSharedMemoryPair, QueueClosedError, SharedMemoryReceiver, SharedMemorySender } from 'shmq'

const FRAMES = 60
const WIDTH = 1920
const HEIGHT = 1080
const FRAME_BYTES = WIDTH * HEIGHT * 3

/** One row of frame `i`: a gray ramp that moves 4 levels per frame. */
function row(i) {
  const line = Buffer.alloc(WIDTH * 3)
  for (let x = 0; x < WIDTH; x++) line.fill((x + 4 * i) & 255, 3 * x, 3 * x + 3)
  return line
}

if (process.argv[2] !== 'child') {
  // Frames are large, so a few in flight are plenty; each one larger than
  // the queue's slotSize travels in a payload segment the sender reuses.
  const [frames, framesEnd] = createSharedMemoryPair({ capacity: 4 })
  const [resultsEnd, results] = createSharedMemoryPair({ capacity: 16 })
  const child = fork(fileURLToPath(import.meta.url), ['child', frames.handle, results.handle])
  // The parent uses neither of these; closing them before the child has
  // attached is safe (the queue waits for the child to join).
  framesEnd.close()
  resultsEnd.close()
  // Every wait below gives up if the child fails, or after 8 s.
  const failed = new AbortController()
  const signal = AbortSignal.any([failed.signal, AbortSignal.timeout(8000)])
  const exited = new Promise((resolve) => child.on('exit', resolve))
  exited.then((code) => code !== 0 && failed.abort(new Error(`the child exited with code ${code}`)))

  const expected = [] // mean brightness of each frame

  async function produce() {
    for (let i = 0; i < FRAMES; i++) {
      const line = row(i)
      expected.push(line.reduce((sum, v) => sum + v, 0) / line.length)
      // Shared memory for one frame (waits while 4 frames are in flight).
      const frame = await frames.reserve(FRAME_BYTES, { signal })
      frame.buffer.fill(line) // draw in place: the row, repeated down the frame
      frame.commit() // the child can lease it now; it arrives as a Buffer
    }
    frames.close() // the child's loop ends once it has leased every frame
  }

  async function collect() {
    // Results come back in frame order (one sender, one receiver).
    for (let i = 0; i < FRAMES; i++) {
      const { frame, brightness } = await results.get({ signal })
      if (frame !== i || Math.abs(brightness - expected[i]) > 1e-9) {
        throw new Error(`frame ${frame}: brightness ${brightness}, expected ${expected[i]} for frame ${i}`)
      }
    }
  }

  try {
    await Promise.all([produce(), collect()])
    const code = await exited
    if (code !== 0) throw new Error(`the child exited with code ${code}`)
    results.close() // the last end of a queue to close removes it from /dev/shm
    const mib = (FRAMES * FRAME_BYTES) / 2 ** 20
    console.log(`frame-pipeline: ${FRAMES} frames (${mib.toFixed(0)} MiB), zero-copy, ok`)
  } catch (e) {
    console.error(`frame-pipeline: FAILED: ${e.cause?.message ?? e.message}`)
    failed.abort(e) // ends every wait still pending
    child.kill()
    process.exitCode = 1
  }
} else {
  // The child: attach to both queues by the handles in argv.
  const frames = SharedMemoryReceiver.attach(process.argv[3])
  const results = SharedMemorySender.attach(process.argv[4])
  for (let frame = 0; ; frame++) {
    let lease
    try {
      lease = await frames.lease() // the next frame, in place
    } catch (e) {
      if (e instanceof QueueClosedError) break // the parent closed and every frame is read
      throw e
    }
    const pixels = lease.value // a Buffer viewing shared memory
    let sum = 0
    for (let p = 0; p < pixels.length; p++) sum += pixels[p]
    const brightness = sum / pixels.length
    lease.release() // the frame's memory goes back to the parent; `pixels` is now empty
    await results.put({ frame, brightness })
  }
  frames.close()
  results.close()
}
