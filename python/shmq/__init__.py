"""shmq for Python: a bounded MPMC queue in named shared memory, crash-safe,
on the same core (and the same queues) as shmq for Node.js.

The API follows py-sharedmemory's, so switching is an import::

    from shmq import create_shared_memory_pair

    sender, receiver = create_shared_memory_pair(capacity=16)
    sender.put(b"bytes")          # bytes, bytearray, memoryview: raw
    sender.put("text")            # str: UTF-8
    sender.put({"any": "object"}) # anything else: pickle (Python to Python)
    receiver.get(timeout=1.0)

Ends pickle to their handle, so they pass to ``multiprocessing.Process`` as
arguments; ``SharedMemorySender.attach(handle)`` / ``SharedMemoryReceiver.attach(handle)``
open a queue made anywhere, by Node.js too. ``put``/``get`` raise
``queue.Full`` / ``queue.Empty`` on timeout and ``BrokenPipeError`` once the
other side has gone (closed or died) or this end is closed.
"""

import atexit
import os

from ._shmq import _after_fork_in_child, _close_all_at_exit
from ._shmq import (
    ForeignValueError,
    SharedMemoryReceiver,
    SharedMemorySender,
    ShmqOSError,
    create_shared_memory_pair,
)

# A forked child holds copies of its parent's ends: they re-attach on first use.
os.register_at_fork(after_in_child=_after_fork_in_child)
# Ends still open at exit close then, so the last one out removes the queue.
atexit.register(_close_all_at_exit)


# A multiprocessing child started by fork leaves through os._exit (no atexit):
# its finalizers run instead. (Registered per child, after multiprocessing
# clears the registry it inherited.)
def _close_at_child_exit(_: object) -> None:
    from multiprocessing import util

    util.Finalize(None, _close_all_at_exit, exitpriority=10)


class _Module:
    pass


_module = _Module()  # register_after_fork keeps only a weak reference
__import__("multiprocessing.util").util.register_after_fork(_module, _close_at_child_exit)

__all__ = [
    "create_shared_memory_pair",
    "SharedMemorySender",
    "SharedMemoryReceiver",
    "ForeignValueError",
    "ShmqOSError",
]
