// Node streams over a queue: backpressure is the queue's own.
import { Readable, Writable } from 'node:stream'

const FOREVER = { timeout: Number.POSITIVE_INFINITY }

interface Putter {
  put(value: unknown, options: typeof FOREVER): Promise<void>
  close(): void
}

/** An object-mode Writable; each chunk is one message; ending it closes the sender. */
export function writableFor(sender: Putter): Writable {
  return new Writable({
    objectMode: true,
    // The queue itself buffers: let the stream hold just one chunk.
    highWaterMark: 1,
    write(chunk: unknown, _encoding, callback) {
      // Streams wait as long as it takes, whatever the end's default timeout.
      sender.put(chunk, FOREVER).then(() => callback(), callback)
    },
    final(callback) {
      sender.close()
      callback()
    },
    // An errored or destroyed stream also stops taking part.
    destroy(error, callback) {
      sender.close()
      callback(error)
    },
  })
}

interface Getter {
  get(options: typeof FOREVER): Promise<unknown>
  close(): void
}

/** An object-mode Readable of the receiver's messages; ends when the queue is
 * closed and drained; destroying it closes the receiver, which ends a pending
 * get without taking a message. (A `null` message cannot travel in a Node
 * stream: the stream errors with ERR_STREAM_NULL_VALUES; use the async
 * iterator for those.) */
export function readableFor(receiver: Getter): Readable {
  return new Readable({
    objectMode: true,
    // No read-ahead: a message is taken only when the consumer asks for one,
    // so destroying the stream never drops one already taken.
    highWaterMark: 0,
    read() {
      receiver.get(FOREVER).then(
        (value) => this.push(value),
        (e: unknown) => {
          if ((e as { code?: unknown }).code === 'ERR_SHMQ_CLOSED') this.push(null)
          else this.destroy(e as Error)
        },
      )
    },
    destroy(error, callback) {
      receiver.close()
      callback(error)
    },
  })
}
