"""Review 3: reproductions. Each test asserts the behaviour that should hold;
on the reviewed code (414a9d4) every one of them fails. Hangs and crashes run
in a subprocess with a timeout, so the suite itself never hangs."""

import multiprocessing as mp
import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import shmq


def run(code, *args, timeout=20):
    """Runs `code` in a fresh interpreter (cwd /); (returncode or 'hung', stdout+stderr)."""
    try:
        p = subprocess.run(
            [sys.executable, "-W", "ignore", "-c", textwrap.dedent(code), *args],
            cwd="/", capture_output=True, text=True, timeout=timeout,
        )
        return p.returncode, p.stdout + p.stderr
    except subprocess.TimeoutExpired as e:
        return "hung", (e.stdout or b"").decode() + (e.stderr or b"").decode()


# 1. A thread waiting in get()/put() holds the end's std Mutex inside
#    allow_threads; a fork at that moment gives the child a Mutex locked for
#    good: the child hangs (holding its GIL) on first use of that end, or at
#    exit in _close_all_at_exit / the end's Drop.
FORK_WHILE_WAITING = """
    import os, sys, threading, time, queue
    import shmq
    tx, rx = shmq.create_shared_memory_pair(capacity=4)
    threading.Thread(target=lambda: rx.get(timeout=30), daemon=True).start()
    time.sleep(0.3)
    pid = os.fork()
    if pid == 0:
        if sys.argv[1] == "use":
            try:
                rx.get_nowait()
            except queue.Empty:
                pass
            os._exit(0)
        sys.exit(0)                     # never touches the queue; atexit runs
    for _ in range(40):
        if os.waitpid(pid, os.WNOHANG)[0]:
            print("child done"); break
        time.sleep(0.1)
    else:
        print("child hung"); os.kill(pid, 9); os.waitpid(pid, 0)
    tx.put(1)
    os._exit(0)
"""


@pytest.mark.parametrize("child", ["use", "exit"])
def test_fork_while_a_thread_waits_does_not_hang_the_child(child):
    code, out = run(FORK_WHILE_WAITING, child)
    assert "child done" in out, out


# 2. A forked child's inherited descriptors share the parent's open file
#    descriptions, so they keep the parent's OFD row locks: the parent can die
#    and still look alive to every peer while the child lives.
def test_a_forked_helper_does_not_keep_a_dead_sender_alive():
    tx, rx = shmq.create_shared_memory_pair(capacity=4)
    tx.close()
    code = """
import os, sys, signal, time, shmq
tx = shmq.SharedMemorySender.attach(sys.argv[1])
tx.put("last")
if os.fork() == 0:
    time.sleep(8); os._exit(0)      # unrelated helper, never touches shmq
os.kill(os.getpid(), signal.SIGKILL)
"""
    # No pipes: the helper would hold them open (and run() would wait for it).
    subprocess.run([sys.executable, "-c", code, rx.handle], cwd="/", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=20)
    assert rx.get(timeout=5) == "last"
    try:
        with pytest.raises(BrokenPipeError):
            rx.get(timeout=2)  # the only sender is dead: closed, not empty
    finally:
        rx.close()


# 3. put(bytearray) keeps a raw slice of the bytearray across the GIL-released
#    wait: another thread resizing it meanwhile makes the put read freed memory.
def test_a_bytearray_resized_during_a_blocking_put_is_not_read_after_free():
    tx, rx = shmq.create_shared_memory_pair(capacity=1, slot_size=1024)
    tx.put(b"filler")
    ba = bytearray(b"A" * 200)
    t = threading.Thread(target=lambda: tx.put(ba))
    t.start()
    time.sleep(0.3)
    try:
        ba.clear()
    except BufferError:
        pass  # refusing the resize while the put holds it is a fine fix
    junk = [bytes([66]) * 200 for _ in range(4)]  # noqa: F841 (reuses the memory)
    assert rx.get(timeout=5) == b"filler"
    t.join(5)
    got = rx.get(timeout=5)
    assert got in (b"A" * 200, b""), got[:32]
    tx.close()
    rx.close()


def test_a_large_bytearray_resized_during_a_blocking_put_does_not_crash():
    code, out = run(
        """
        import threading, time, shmq
        tx, rx = shmq.create_shared_memory_pair(capacity=1, slot_size=1024, max_message_size=1 << 30)
        tx.put(b"filler")
        ba = bytearray(64 << 20)
        t = threading.Thread(target=lambda: tx.put(ba)); t.start()
        time.sleep(0.3)
        try:
            ba.clear()
        except BufferError:
            pass
        rx.get(timeout=5); t.join(); rx.get(timeout=5)
        print("survived")
        """
    )
    assert code == 0 and "survived" in out, (code, out)


# 4. Two threads on one end: the waiting one holds the Mutex (GIL released),
#    the other blocks on it HOLDING the GIL, so a producer thread in the same
#    process cannot run until the 100 ms wait slice ends.
def test_two_consumer_threads_do_not_freeze_the_interpreter():
    pytest.importorskip("numpy")  # imported up front (see test 5)
    tx, rx = shmq.create_shared_memory_pair(capacity=64)
    got = []

    def consume():
        while (v := rx.get(timeout=10)) is not None:
            got.append(v)

    ts = [threading.Thread(target=consume) for _ in range(2)]
    for t in ts:
        t.start()
    time.sleep(0.3)
    started = time.monotonic()
    for i in range(20):
        tx.put(i)
        time.sleep(0.001)
    while len(got) < 20:
        time.sleep(0.001)
    took = time.monotonic() - started
    for _ in ts:
        tx.put(None)
    for t in ts:
        t.join()
    tx.close()
    rx.close()
    assert took < 0.5, f"20 messages took {took:.2f}s"


# 5. decode() imports numpy for every message it decodes after the slot is
#    freed, pickles included; numpy_parts() trusts sys.modules["numpy"], so a
#    put in another thread meanwhile sees a half-initialized numpy.
def test_a_put_is_not_broken_by_numpy_being_imported_elsewhere():
    code, out = run(
        """
        import threading, time, shmq
        tx, rx = shmq.create_shared_memory_pair(capacity=64)
        tx.put({"a": 1})
        errors, stop = [], False
        def putter():
            while not stop:
                try:
                    tx.put_nowait(123)
                except Exception as e:
                    if type(e).__name__ != "Full":
                        errors.append(repr(e))
        t = threading.Thread(target=putter); t.start()
        rx.get(timeout=5)
        stop = True; t.join()
        print("errors", len(errors), errors[:1])
        """
    )
    assert "errors 0" in out, out


def test_a_none_numpy_entry_in_sys_modules_does_not_break_bytes_puts():
    code, out = run(
        """
        import sys
        sys.modules["numpy"] = None     # the usual way to block an import
        import shmq
        tx, rx = shmq.create_shared_memory_pair()
        tx.put(b"x"); print(rx.get(timeout=1))
        """
    )
    assert code == 0, out


# 6. ndarray subclasses are sent as their base ndarray: a masked array's mask
#    (and any subclass's state) is silently dropped.
def test_a_masked_array_keeps_its_mask():
    np = pytest.importorskip("numpy")
    tx, rx = shmq.create_shared_memory_pair()
    m = np.ma.masked_array([1.0, -999.0, 3.0], mask=[False, True, False])
    tx.put(m)
    got = rx.get(timeout=5)
    tx.close()
    rx.close()
    assert isinstance(got, np.ma.MaskedArray) and got.sum() == 4.0, (type(got), got)


# 7. A multiprocessing 'fork' child leaves by os._exit: no atexit, and its
#    args are never dropped, so when it is the last end out the queue stays.
def _drain(rx, started):
    rx.get(timeout=10)
    started.set()
    try:
        while True:
            rx.get(timeout=10)
    except BrokenPipeError:
        pass


def test_a_fork_child_last_out_removes_the_queue():
    ctx = mp.get_context("fork")
    tx, rx = shmq.create_shared_memory_pair(capacity=8)
    handle = tx.handle
    started = ctx.Event()
    p = ctx.Process(target=_drain, args=(rx, started))
    p.start()
    for i in range(3):
        tx.put(i)
    assert started.wait(10)
    tx.close()
    rx.close()
    p.join(20)
    assert p.exitcode == 0
    left = [n for n in os.listdir("/dev/shm") if n.startswith(handle)]
    for n in left:  # clean up what the bug leaves
        os.unlink("/dev/shm/" + n)
    assert left == []


# 8. Without NumPy, an N-d array arrives through memoryview.cast: the code
#    casts the already-cast 1-D view again (format -> same format), which
#    memoryview refuses for any non-byte format, so the message is lost.
def test_a_2d_float_array_reaches_a_receiver_without_numpy():
    np = pytest.importorskip("numpy")
    tx, rx = shmq.create_shared_memory_pair()
    tx.put(np.arange(6.0).reshape(2, 3))
    code, out = run(
        """
        import sys
        class NoNumpy:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "numpy":
                    raise ImportError("no numpy")
        sys.meta_path.insert(0, NoNumpy())
        import shmq
        rx = shmq.SharedMemoryReceiver.attach(sys.argv[1])
        print(rx.get(timeout=5).tolist())
        """,
        tx.handle,
    )
    tx.close()
    rx.close()
    assert "[[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]" in out, out


# 9. wait_for_all_ack waits on ITEMS, but a receiver that takes a message bumps
#    SPACE: the ack is seen only when a 100 ms slice times out.
def test_wait_for_all_ack_sees_the_ack_promptly():
    tx, rx = shmq.create_shared_memory_pair(capacity=8)
    stop = threading.Event()

    def consume():
        while not stop.is_set():
            try:
                rx.get(timeout=0.2)
            except queue.Empty:
                pass

    t = threading.Thread(target=consume)
    t.start()
    time.sleep(0.2)
    took = []
    for i in range(5):
        started = time.monotonic()
        tx.put(i)
        assert tx.wait_for_all_ack(timeout=5)
        took.append(time.monotonic() - started)
    stop.set()
    t.join()
    tx.close()
    rx.close()
    assert max(took) < 0.05, [round(x * 1000) for x in took]
