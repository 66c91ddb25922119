"""A TCP proxy that adds latency or swallows traffic: a link made worse on purpose (between a process and the
API server here, between the operator pod and an engine pod in tests/pods, where this kernel has no netem).

    proxy = DelayProxy("127.0.0.1", engine_port).start()   # its own asyncio loop, in a thread
    proxy.delay = 0.3      # every chunk, both ways, waits 300 ms before it is forwarded
    proxy.blackhole = True # connections are accepted and read, but nothing is forwarded or answered
    proxy.blackhole = False  # connections opened from now on work again
    proxy.stop()

    # Inside a pod's network namespace (the proxy's thread enters it with setns(2), so every socket it opens,
    # listening or outgoing, is the pod's); pair it with an iptables REDIRECT in that netns.
    proxy = DelayProxy(pod_ip, 8001, listen=("0.0.0.0", 18001), netns_pid=pid, delay=0.3).start()

While blackholed, new and already open connections stay open and silent (like a dropped route): the
client's own deadline is what ends them. Connections opened while blackholed stay dead after recovery, as
a half-open TCP connection would; new ones work.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import socket
import threading

CLONE_NEWNET = 0x40000000


class DelayProxy:
    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        delay: float = 0.0,
        listen: tuple[str, int] | None = None,
        netns_pid: int | None = None,
    ) -> None:
        self.target = (target_host, target_port)
        self.netns_pid = netns_pid
        self._failed: OSError | None = None
        self._entered = threading.Event()
        self.delay = delay
        self.blackhole = False
        self.connections = 0  # accepted so far
        self.chunks_in = 0  # chunks received from clients (a request has reached the proxy)
        self.open = 0  # open right now
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._run, name="delay-proxy", daemon=True)
        self._tasks: set[asyncio.Task[None]] = set()
        if listen is not None:
            self.host, self.port = listen
        else:
            self.host = "127.0.0.1"
            with socket.socket() as s:
                s.bind((self.host, 0))
                self.port = s.getsockname()[1]

    def _run(self) -> None:
        try:
            if self.netns_pid is not None:
                _enter_netns(self.netns_pid)
        except OSError as exc:
            self._failed = exc
            return
        finally:
            self._entered.set()  # start() waits for this, entered or not
        self._loop.run_forever()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> DelayProxy:
        self._thread.start()
        self._entered.wait(10)
        if self._failed is not None:
            self._loop.close()
            raise self._failed
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(10)
        return self

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)  # type: ignore[arg-type]
        try:
            if self.blackhole:
                # Read and drop until the client gives up: no answer, no reset.
                while await reader.read(65536):
                    self.chunks_in += 1
                return
            try:
                up_reader, up_writer = await asyncio.open_connection(*self.target)
            except OSError:
                return
            try:
                await asyncio.gather(
                    self._pipe(reader, up_writer, from_client=True), self._pipe(up_reader, writer)
                )
            finally:
                up_writer.close()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.open -= 1
            self._tasks.discard(task)  # type: ignore[arg-type]
            writer.close()

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, from_client: bool = False
    ) -> None:
        try:
            while data := await reader.read(65536):
                if from_client:
                    self.chunks_in += 1
                if self.blackhole:
                    continue  # an open connection goes silent too, as on a dropped route
                if self.delay > 0:
                    await asyncio.sleep(self.delay)
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.write_eof()

    def stop(self) -> None:
        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.sleep(0)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()


def _enter_netns(pid: int) -> None:
    """Move the calling thread (only it: a netns is per thread) into the network namespace of `pid`.
    Python 3.11 has no os.setns; addresses stay numeric so asyncio never resolves them in another thread."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns into the netns of pid {pid}: {os.strerror(err)}")
    finally:
        os.close(fd)
