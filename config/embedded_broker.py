"""The embedded default's Celery broker: kombu's filesystem transport, with atomic writes.

Why not kombu's own filesystem transport as it is (kombu 5.7, pinned; re-check on upgrade): its
writer creates the message file under its final name and only then writes the payload, and its
reader renames (claims) any file with the right name without taking the writer's lock. A worker
polling while beat enqueues a sweep can therefore claim an empty or half-written file, fail to
decode it, and exit with "Unrecoverable error: JSONDecodeError" — which is how `make run` died
after a few minutes. The exchange tables in the control folder have the same create-then-write
window.

Here every file a reader may see is written under a temporary name that no reader matches and
then renamed into place: a rename within one directory is atomic on POSIX, so a reader sees
either nothing or the whole message. Claiming a message is a rename into a "claimed" folder on
the same file system (kombu moves it to the system temp folder, which may be another file system,
where a move is a copy and a delete). Everything lives in the data directory: messages in
``queue/``, exchange tables in ``control/``, claimed messages briefly in ``claimed/``.

Why not kombu's SQLAlchemy transport on a SQLite file: it adds SQLAlchemy to the platform only for
this, and three processes writing one SQLite file through it meet "database is locked" under
load, which the transport does not retry. The filesystem keeps the embedded default free of any
server and of any lock shared by all processes.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from queue import Empty
from time import monotonic

from kombu.transport import TRANSPORT_ALIASES, filesystem
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads

TRANSPORT_ALIAS = "platformfs"
# A file whose name starts with this is still being written: no reader ever matches it, since
# kombu matches "<anything>.<queue>.msg" and its own listing here skips these names too.
_WRITING_PREFIX = ".writing-"


# How often an idle consumer looks for new messages. kombu's default of a second also paces a busy
# worker: with late acknowledgement it fetches the next message only at its next look, so it
# managed about two tasks a second, fell behind beat's sweeps, and background runs waited minutes
# behind them. A directory listing every 50 ms costs next to nothing.
POLLING_INTERVAL_SECONDS = 0.05


def transport_options(data_dir: Path) -> dict[str, str | float]:
    """The broker's folders, all inside the platform's data directory (created here), and its
    polling interval."""
    root = data_dir / "broker"
    folders = {
        "data_folder_in": root / "queue",
        "data_folder_out": root / "queue",
        "control_folder": root / "control",
        "processed_folder": root / "claimed",
    }
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    return {
        **{name: str(folder) for name, folder in folders.items()},
        "polling_interval": POLLING_INTERVAL_SECONDS,
    }


def _write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_name(f"{_WRITING_PREFIX}{uuid.uuid4().hex}")
    with open(temporary, "wb") as file:
        file.write(data)
    os.replace(temporary, path)


class Channel(filesystem.Channel):
    # kombu's own filesystem Channel already renames the base class's `message` argument.
    def _put(self, queue, payload, **kwargs):  # type: ignore[override]
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        try:
            _write_atomically(Path(self.data_folder_out) / name, str_to_bytes(dumps(payload)))
        except OSError as exc:
            raise filesystem.ChannelError(f"Cannot add a message to {queue!r}") from exc

    def _get(self, queue, timeout=None):
        wanted = f"{queue}.msg"
        inbox = Path(self.data_folder_in)
        claimed = Path(self.processed_folder)
        for name in sorted(os.listdir(inbox)):
            if name.startswith(_WRITING_PREFIX) or name.partition(".")[2] != wanted:
                continue
            mine = claimed / name
            try:
                os.rename(inbox / name, mine)
            except FileNotFoundError:
                continue  # another consumer claimed it first
            try:
                payload = mine.read_bytes()
            finally:
                mine.unlink(missing_ok=True)
            return loads(bytes_to_str(payload))
        raise Empty()

    def _queue_bind(self, exchange, routing_key, pattern, queue):
        file = self._exchange_file(exchange)
        entry = filesystem.exchange_queue_t(routing_key or "", pattern or "", queue or "")
        # Read-modify-write under an exclusive lock on a side file (the table itself is replaced
        # by rename, so a lock on it would be a lock on a file that is about to go away).
        with open(file.with_name(f"{file.name}.lock"), "a+b") as lock_file:
            filesystem.lock(lock_file, filesystem.LOCK_EX)
            try:
                table = self.get_table(exchange)
                if entry in table:
                    return
                table.insert(0, entry)
                _write_atomically(file, str_to_bytes(dumps(table)))
            finally:
                filesystem.unlock(lock_file)

    def _delete(self, queue, exchange, routing_key, pattern, *args, **kwargs):
        # Skip kombu's filesystem override (an in-place rewrite of the table) and drop the entry
        # the same way it was added.
        super(filesystem.Channel, self)._delete(
            queue, exchange, routing_key, pattern, *args, **kwargs
        )
        file = self._exchange_file(exchange)
        entry = filesystem.exchange_queue_t(routing_key or "", pattern or "", queue or "")
        with open(file.with_name(f"{file.name}.lock"), "a+b") as lock_file:
            filesystem.lock(lock_file, filesystem.LOCK_EX)
            try:
                table = self.get_table(exchange)
                if entry in table:
                    table.remove(entry)
                    _write_atomically(file, str_to_bytes(dumps(table)))
            finally:
                filesystem.unlock(lock_file)

    def _purge(self, queue):
        wanted = f"{queue}.msg"
        count = 0
        inbox = Path(self.data_folder_in)
        for name in os.listdir(inbox):
            if name.startswith(_WRITING_PREFIX) or name.partition(".")[2] != wanted:
                continue
            try:
                (inbox / name).unlink()
            except FileNotFoundError:
                continue
            count += 1
        return count

    def _size(self, queue):
        wanted = f"{queue}.msg"
        return sum(
            1
            for name in os.listdir(self.data_folder_in)
            if not name.startswith(_WRITING_PREFIX) and name.partition(".")[2] == wanted
        )


class Transport(filesystem.Transport):
    Channel = Channel
    driver_type = "platformfs"
    driver_name = "platformfs"


def register() -> None:
    """Make ``platformfs://`` a broker URL kombu understands (a URL's scheme may only name an
    alias, never a module path)."""
    TRANSPORT_ALIASES[TRANSPORT_ALIAS] = "config.embedded_broker:Transport"
