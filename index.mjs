// ESM entry: the same classes as the CommonJS build (no dual-package copies).
import shmq from './index.js'

export const {
  createSharedMemoryPair,
  SharedMemorySender,
  SharedMemoryReceiver,
  QueueFullError,
  QueueEmptyError,
  QueueClosedError,
  MessageTooLargeError,
  NotCloneableError,
  AbortError,
  ShmqError,
  DEFAULT_CAPACITY,
  DEFAULT_SLOT_SIZE,
} = shmq
export default shmq
