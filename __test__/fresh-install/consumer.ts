// Type-checks the CommonJS entry's types (index.d.ts) as a CommonJS
// consumer sees them (tsc --noEmit, strict, nodenext).
import {
  createSharedMemoryPair,
  isSupported,
  QueueClosedError,
  SharedMemoryReceiver,
  type SharedMemorySender,
  type AsyncWaitOptions,
  type ShmqErrorCode,
} from 'shmq'

interface Frame {
  id: number
  pixels: Uint8Array
}

async function main(): Promise<void> {
  if (!isSupported()) return
  const [tx, rx]: [SharedMemorySender<Frame>, SharedMemoryReceiver<Frame>] = createSharedMemoryPair<Frame>({
    capacity: 4,
  })
  const options: AsyncWaitOptions = { timeout: 100, signal: AbortSignal.timeout(1000) }
  await tx.put({ id: 1, pixels: new Uint8Array(4) }, options)
  const frame: Frame = await rx.get()
  const id: number = frame.id
  const again = SharedMemoryReceiver.attach<Frame>(rx.handle)
  for await (const f of again) console.log(f.pixels.length + id)
  try {
    rx.getNowait()
  } catch (e) {
    if (e instanceof QueueClosedError) {
      const code: ShmqErrorCode = e.code
      console.log(code)
    }
  }
  tx.close()
  rx.close()
}

void main()
