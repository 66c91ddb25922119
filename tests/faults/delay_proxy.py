"""A TCP proxy on loopback that adds latency or swallows traffic: the network between the operator and an
engine, made worse on purpose.

    proxy = DelayProxy("127.0.0.1", engine_port).start()   # its own asyncio loop, in a thread
    proxy.delay = 0.3      # every chunk, both ways, waits 300 ms before it is forwarded
    proxy.blackhole = True # connections are accepted and read, but nothing is forwarded or answered
    proxy.blackhole = False  # connections opened from now on work again
    proxy.stop()

While blackholed, new and already open connections stay open and silent (like a dropped route): the
client's own deadline is what ends them. Connections opened while blackholed stay dead after recovery, as
a half-open TCP connection would; new ones work.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading


class DelayProxy:
    def __init__(self, target_host: str, target_port: int, *, delay: float = 0.0) -> None:
        self.target = (target_host, target_port)
        self.delay = delay
        self.blackhole = False
        self.connections = 0  # accepted so far
        self.chunks_in = 0  # chunks received from clients (a request has reached the proxy)
        self.open = 0  # open right now
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="delay-proxy", daemon=True)
        self._tasks: set[asyncio.Task[None]] = set()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> DelayProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(10)
        return self

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

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
