"""Where the embedded engine's pieces are, from settings, and how they are put together.

Shared by ``manage.py prepare_model``, ``manage.py runengine`` and the integration tests, so all
three prepare and start the engine the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import IO

from django.conf import settings

from engines.embedded import prepare
from engines.embedded.server import (
    EngineProfile,
    EngineServer,
    EngineStartError,
    detect_device,
    engine_env,
    installed_version,
    profile_path,
)

DEFAULT_PROFILE = prepare.SMOLLM2_135M_INSTRUCT.name


def engine_venv() -> Path:
    return Path(getattr(settings, "ENGINE_VENV_DIR", settings.BASE_DIR / ".venv-engine"))


def engine_python() -> Path:
    return engine_venv() / "bin" / "python"


def profiles_dir() -> Path:
    return Path(settings.BASE_DIR) / "platform" / "engines"


def load_profile(name: str = DEFAULT_PROFILE, device: str = "auto") -> EngineProfile:
    path = profile_path(profiles_dir(), name)
    if device == "auto":
        device = detect_device(path, engine_venv())
    profile = EngineProfile.load(path, device)
    pinned = profile.package.partition("==")[2]
    installed = installed_version(engine_venv(), profile.package)
    fix = f"run VLLM_PACKAGE={profile.package} scripts/engine-venv.sh"
    if installed is None:
        raise EngineStartError(f"{profile.package} is not installed in {engine_venv()}; {fix}")
    if pinned and installed != pinned:
        raise EngineStartError(
            f"{engine_venv()} has {installed} but profile {name} wants {profile.package}; {fix}"
        )
    return profile


def prepare_model(model: str, *, force: bool = False, log=print) -> prepare.Prepared:
    """Prepare ``model`` (a name from ``prepare.SOURCES``) in the data directory."""
    try:
        source = prepare.SOURCES[model]
    except KeyError:
        raise EngineStartError(
            f"no model {model!r} to prepare (known: {', '.join(prepare.SOURCES)})"
        ) from None
    return prepare.prepare(
        source,
        data_dir=Path(settings.DATA_DIR),
        engine_python=engine_python(),
        force=force,
        log=log,
    )


def build_server(
    profile: EngineProfile, *, host: str, port: int, output: IO[bytes] | None = None
) -> EngineServer:
    model_dir = prepare.model_dir(Path(settings.DATA_DIR), profile.model)
    return EngineServer(
        profile.command(python=engine_python(), model_dir=model_dir, host=host, port=port),
        env=engine_env(profile),
        host=host,
        port=port,
        cwd=model_dir.parent,
        output=output,
    )
