"""shmq for Python over real processes (multiprocessing spawn and fork), real /dev/shm."""

import multiprocessing as mp
import os
import pickle
import queue
import signal
import time

import pytest

import shmq


def names():
    return {n for n in os.listdir("/dev/shm") if n.startswith("shmq-")}


def test_values_round_trip():
    tx, rx = shmq.create_shared_memory_pair(capacity=8)
    big = os.urandom(3 << 20)
    for value in [b"", b"bytes", "héllo", {"nested": [1, 2.5, None]}, big]:
        tx.put(value)
        assert rx.get(timeout=5) == value
    tx.put(bytearray(b"ba"))
    assert rx.get() == b"ba"
    tx.put(memoryview(b"mv"))
    assert rx.get() == b"mv"
    tx.close()
    rx.close()


def test_full_empty_timeouts_and_closed():
    tx, rx = shmq.create_shared_memory_pair(capacity=1)
    tx.put_nowait(1)
    with pytest.raises(queue.Full):
        tx.put_nowait(2)
    started = time.monotonic()
    with pytest.raises(queue.Full):
        tx.put(2, timeout=0.1)
    assert time.monotonic() - started >= 0.09
    assert rx.get_nowait() == 1
    with pytest.raises(queue.Empty):
        rx.get(timeout=0.05)
    with pytest.raises(ValueError):
        rx.get(timeout=-1)
    tx.close()
    assert tx.closed
    with pytest.raises(BrokenPipeError):
        tx.put(3)
    with pytest.raises(BrokenPipeError):
        rx.get()  # every sender gone, drained
    rx.close()


def test_context_managers_and_wait_for_all_ack():
    with shmq.create_shared_memory_pair()[0] as tx:
        handle = tx.handle
        with shmq.SharedMemoryReceiver.attach(handle) as rx:
            tx.put("x")
            assert not tx.wait_for_all_ack(timeout=0.05)
            assert rx.get() == "x"
            assert tx.wait_for_all_ack(timeout=5)
        assert rx.closed
    assert tx.closed


def produce(sender, count):
    for i in range(count):
        sender.put({"i": i, "pid": os.getpid()})
    sender.wait_for_all_ack(timeout=30)
    sender.close()


def consume(receiver, out):
    got = 0
    try:
        while True:
            receiver.get(timeout=30)
            got += 1
    except BrokenPipeError:
        pass
    out.put(got)


@pytest.mark.parametrize("method", ["spawn", "fork"])
def test_ends_pickle_to_processes_mpmc(method):
    ctx = mp.get_context(method)
    tx, rx = shmq.create_shared_memory_pair(capacity=4)
    assert pickle.loads(pickle.dumps(tx)).handle == tx.handle
    counts = ctx.Queue()
    producers = [ctx.Process(target=produce, args=(tx, 200)) for _ in range(2)]
    consumers = [ctx.Process(target=consume, args=(rx, counts)) for _ in range(2)]
    for p in producers + consumers:
        p.start()
    # The creator's ends stay open until every child has attached and finished
    # (children start at different times; see the README on late attachers).
    for p in producers:
        p.join(60)
        assert p.exitcode == 0
    tx.close()
    for p in consumers:
        p.join(60)
        assert p.exitcode == 0
    rx.close()
    assert counts.get(timeout=5) + counts.get(timeout=5) == 400


def hold_forever(receiver, ready):
    receiver.get()
    ready.set()
    time.sleep(600)


def test_a_sigkilled_consumer_is_reaped():
    ctx = mp.get_context("spawn")
    tx, rx = shmq.create_shared_memory_pair(capacity=2)
    ready = ctx.Event()
    child = ctx.Process(target=hold_forever, args=(rx, ready))
    child.start()
    rx.close()
    tx.put("taken")
    assert ready.wait(30)
    os.kill(child.pid, signal.SIGKILL)
    child.join(10)
    # The only receiver died: the sender learns it instead of waiting for ever.
    with pytest.raises(BrokenPipeError):
        for _ in range(10):
            tx.put("nobody", timeout=5)
    handle = tx.handle
    tx.close()
    assert not any(n.startswith(handle) for n in names())


def test_attach_errors():
    with pytest.raises(shmq.ShmqOSError):
        shmq.SharedMemorySender.attach("shmq-0000000000000000")
    with pytest.raises(ValueError):
        shmq.SharedMemoryReceiver.attach("not a handle")


def test_numpy_arrays_keep_dtype_and_shape():
    np = pytest.importorskip("numpy")
    tx, rx = shmq.create_shared_memory_pair(capacity=4)
    arrays = [
        np.arange(12, dtype=np.float32).reshape(3, 4),
        np.arange(10, dtype=np.uint8),
        np.arange(-5, 5, dtype=np.int64).reshape(2, 5)[:, ::2],  # not contiguous
        np.array([1, 2], dtype=">i4"),  # big-endian: pickled
        np.array([True, False]),  # bool: pickled
        np.zeros((0, 3)),
    ]
    for a in arrays:
        tx.put(a)
        b = rx.get(timeout=5)
        assert isinstance(b, np.ndarray) and b.dtype == a.dtype and b.shape == a.shape
        assert np.array_equal(a, b)
    tx.close()
    rx.close()


def send_array(sender, mib):
    np = __import__("numpy")
    sender.put(np.full((mib, 1 << 18), 7, dtype=np.float32))  # mib MiB
    sender.wait_for_all_ack(timeout=60)


def test_a_256_mib_numpy_array_crosses_processes():
    np = pytest.importorskip("numpy")
    tx, rx = shmq.create_shared_memory_pair(capacity=2)
    child = mp.get_context("spawn").Process(target=send_array, args=(tx, 256))
    child.start()
    a = rx.get(timeout=60)
    child.join(60)
    assert child.exitcode == 0
    assert a.shape == (256, 1 << 18) and a.dtype == np.float32 and a.nbytes == 256 << 20
    assert float(a.min()) == 7.0 and float(a.max()) == 7.0
    tx.close()
    rx.close()
