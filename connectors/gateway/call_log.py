"""Per-call JSON-lines logs (and optional recordings), written off the event loop.

Every record a call makes (emotion events, turns, tones, escalations) is appended to
``<log_dir>/<call id>.jsonl``. The writes happen on one writer thread shared by all calls, in
order; the loop only serialises the record and queues it. ``close()`` returns a future that is
done once everything the call queued is on disk (the pipeline awaits it before it reports the
call ended), so a reader of the file after the call never sees half of it.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

import numpy as np
import soundfile as sf

__all__ = ["CallLog", "LogWriter", "Recording"]


class LogWriter:
    """The one thread that does the gateway's call-file I/O (FIFO, so each file's order holds)."""

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="call-log")

    def submit(self, function: Any, *args: Any) -> Future[Any]:
        return self._executor.submit(function, *args)

    def close(self) -> None:
        self._executor.shutdown(wait=True)


_SHARED: LogWriter | None = None


def shared_writer() -> LogWriter:
    global _SHARED
    if _SHARED is None:
        _SHARED = LogWriter()
    return _SHARED


class CallLog:
    """Append-only JSON-lines record of one call; ``write`` never blocks on the disk."""

    def __init__(self, directory: Path | None, call_id: str, writer: LogWriter | None = None) -> None:
        self.path: Path | None = None
        self._writer = writer or shared_writer()
        self._handle: IO[str] | None = None
        if directory is not None:
            safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in call_id)[:100]
            self.path = directory / f"{safe}.jsonl"
            self._writer.submit(self._open, directory)

    def _open(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        assert self.path is not None
        self._handle = self.path.open("a", encoding="utf-8")

    def _append(self, line: str) -> None:
        if self._handle is not None:
            self._handle.write(line)
            self._handle.flush()

    def _close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def write(self, kind: str, **fields: Any) -> dict[str, Any]:
        record = {"type": kind, "wall_time": round(time.time(), 3), **fields}
        if self.path is not None:
            self._writer.submit(self._append, json.dumps(record, default=str) + "\n")
        return record

    def close(self) -> Future[None]:
        """Done when every record written so far is on disk and the file is closed."""
        return self._writer.submit(self._close)


class Recording:
    """One party's audio as FLAC, written by the same thread as the call log."""

    def __init__(self, path: Path, sample_rate: int, writer: LogWriter | None = None) -> None:
        self.path = path
        self._writer = writer or shared_writer()
        self._file: sf.SoundFile | None = None
        self._writer.submit(self._open, sample_rate)

    def _open(self, sample_rate: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = sf.SoundFile(str(self.path), "w", sample_rate, 1, format="FLAC", subtype="PCM_16")

    def _write(self, samples: np.ndarray) -> None:
        if self._file is not None:
            self._file.write(samples)

    def _close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def write(self, samples: np.ndarray) -> None:
        self._writer.submit(self._write, np.array(samples, dtype=np.float32, copy=True))

    def close(self) -> Future[None]:
        return self._writer.submit(self._close)
