"""Redis commands sent now and their replies read later, and Lua scripts run by EVALSHA.

The worker overlaps round trips with work: a batch's start is sent before its model call
and read after it, the transport's take script is sent before a popped message goes to the
pool and read after. ``Sent`` is that plumbing, written once: the commands go out on a
connection taken from the client's pool, held until their replies are read, and dropped
(never reused) if anything goes wrong in between, when a reply may still be owed on it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

import redis
from redis.client import Pipeline
from redis.exceptions import NoScriptError, ResponseError


class Sent:
    """Commands written to one connection of ``client``'s pool, held until ``read``."""

    def __init__(self, client: redis.Redis, commands: Sequence[tuple[Any, ...]]) -> None:
        self._count = len(commands)
        self._pool = client.connection_pool
        self._connection: Any = self._pool.get_connection()
        try:
            self._connection.send_packed_command(self._connection.pack_commands(commands))
        except BaseException:
            self._release(broken=True)
            raise

    def read(self) -> list[Any]:
        """Each command's reply in order; an error reply is returned as its
        ``ResponseError``, not raised. A lost connection raises (and is dropped)."""
        replies: list[Any] = []
        try:
            for _ in range(self._count):
                try:
                    replies.append(self._connection.read_response())
                except ResponseError as exc:
                    replies.append(exc)
        except BaseException:
            self._release(broken=True)
            raise
        self._release()
        return replies

    def _release(self, broken: bool = False) -> None:
        if broken:
            # Replies may still be owed on this connection: never reuse it.
            self._connection.disconnect()
        self._pool.release(self._connection)


def script_sha(script: str) -> str:
    return hashlib.sha1(script.encode()).hexdigest()


class ScriptPipeline:
    """Lua scripts called by EVALSHA inside pipelines, loaded once per process.

    redis-py's ``Script`` objects ask Redis ``SCRIPT EXISTS`` before every pipeline that
    uses them: a second round trip each time. Here a script is loaded on first use and
    again only when Redis answers NOSCRIPT (after a restart or ``SCRIPT FLUSH``).
    """

    def __init__(self, client: redis.Redis, *scripts: str) -> None:
        self._client = client
        self._sha = {s: script_sha(s) for s in scripts}
        self._loaded = False

    def call(self, pipe: Pipeline, script: str, keys: Sequence[str],
             args: Sequence[Any]) -> None:
        pipe.evalsha(self._sha[script], len(keys), *keys, *args)

    def execute(self, build: Callable[[Pipeline], None]) -> list[Any]:
        """Run the pipeline ``build`` fills; load the scripts and retry once on NOSCRIPT."""
        if not self._loaded:
            self._load()
        pipe = self._client.pipeline(transaction=False)
        build(pipe)
        try:
            return list(pipe.execute())
        except NoScriptError:
            self._load()
            pipe = self._client.pipeline(transaction=False)
            build(pipe)
            return list(pipe.execute())

    def send(self, build: Callable[[Pipeline], None]) -> SentPipeline:
        """Send the pipeline ``build`` fills without waiting for its replies.

        The caller works while Redis runs it, then reads the replies with ``read()``. A
        connection lost before the replies came runs the pipeline again, so its commands
        must bear running twice.
        """
        if not self._loaded:
            self._load()
        pipe = self._client.pipeline(transaction=False)
        build(pipe)
        commands = [args for args, _options in pipe.command_stack]
        return SentPipeline(self, build, Sent(self._client, commands))

    def _load(self) -> None:
        for script in self._sha:
            self._client.script_load(script)
        self._loaded = True


class SentPipeline:
    """A pipeline ``ScriptPipeline.send`` sent, read as ``ScriptPipeline.execute`` returns."""

    def __init__(self, scripts: ScriptPipeline, build: Callable[[Pipeline], None],
                 sent: Sent) -> None:
        self._scripts = scripts
        self._build = build
        self._sent = sent

    def read(self) -> list[Any]:
        try:
            replies = self._sent.read()
        except (redis.ConnectionError, redis.TimeoutError):
            # Ambiguous: run them again, with the client's own reconnection and retries.
            return self._scripts.execute(self._build)
        if any(isinstance(r, NoScriptError) for r in replies):
            return self._scripts.execute(self._build)  # Nothing ran: load, then run.
        for reply in replies:
            if isinstance(reply, ResponseError):
                raise reply
        return replies
