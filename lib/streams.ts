// Node streams over a queue: backpressure is the queue's own.
import { Readable, Writable } from 'node:stream'

interface Putter {
  put(value: unknown): Promise<void>
  close(): void
}

/** An object-mode Writable; each chunk is one message; ending it closes the sender. */
export function writableFor(sender: Putter): Writable {
  return new Writable({
    objectMode: true,
    // The queue itself buffers: let the stream hold just one chunk.
    highWaterMark: 1,
    write(chunk: unknown, _encoding, callback) {
      sender.put(chunk).then(() => callback(), callback)
    },
    final(callback) {
      sender.close()
      callback()
    },
  })
}

/** An object-mode Readable of the receiver's messages; ends when the queue is closed and drained. */
export function readableFor(messages: AsyncIterable<unknown>): Readable {
  return Readable.from(messages, { objectMode: true, highWaterMark: 1 })
}
