"""A gRPC request stream received on a thread of its own, so a broken connection loses at most one chunk."""

import queue
import threading

READ_AHEAD = 8   # chunks of a Write stream taken off the connection while earlier ones are written


def read_ahead(messages, depth: int = READ_AHEAD):
    """The stream's messages, received on a thread of their own into a queue of ``depth``.

    Every message that has arrived is in this process, not in gRPC's buffers, when a connection
    breaks: the handler writes it before it sees the break, so the station resends at most the one
    chunk that was still on the wire. (Flow control is per message — the server's BDP probing is
    off — so while the queue is full the station waits instead of gRPC buffering megabytes.)
    """
    box: "queue.Queue[tuple[object, BaseException | None]]" = queue.Queue(depth)
    done = threading.Event()

    def hand_over(item) -> bool:
        while not done.is_set():
            try:
                box.put(item, timeout=0.5)
                return True
            except queue.Full:
                continue
        return False  # the handler has stopped reading

    def receive():
        try:
            for message in messages:
                if not hand_over((message, None)):
                    return
            hand_over((None, None))
        except BaseException as exc:  # noqa: BLE001 - handed to the handler's thread, raised there
            hand_over((None, exc))

    threading.Thread(target=receive, name="quire-write-read-ahead", daemon=True).start()
    try:
        while True:
            message, error = box.get()
            if error is not None:
                raise error
            if message is None:
                return
            yield message
    finally:
        done.set()  # the handler stopped early (refusal, disk full): the receiver gives up too
