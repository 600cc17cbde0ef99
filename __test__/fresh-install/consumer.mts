// Type-checks the ES module entry's own types (index.d.mts) as an ESM
// consumer sees them: named and default imports, values and types.
import shmq, {
  createSharedMemoryPair,
  isSupported,
  type Lease,
  type Reservation,
  ShmqError,
  type SharedMemoryReceiver,
  type QueueOptions,
  type ShmqErrorCode,
} from 'shmq'

const options: QueueOptions = { capacity: 2, slotSize: 1024 }
const supported: boolean = isSupported() && shmq.isSupported()

async function main(): Promise<void> {
  if (!supported) return
  const [tx, rx] = createSharedMemoryPair<Uint8Array>(options)
  const reservation: Reservation = await tx.reserve(8)
  reservation.buffer.fill(1)
  reservation.commit()
  const lease: Lease<Uint8Array> = await rx.lease()
  const first: number = lease.value[0]
  lease.release()
  const again: SharedMemoryReceiver<Uint8Array> = shmq.SharedMemoryReceiver.attach<Uint8Array>(rx)
  again.close()
  tx.close()
  rx.close()
  console.log(first)
}

try {
  await main()
} catch (e) {
  if (e instanceof ShmqError) {
    const code: ShmqErrorCode = e.code
    console.log(code)
  }
}
