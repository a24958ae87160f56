"""Where models come from: the shipped files, the user's own, a path, or a Hugging Face config.

``load_model(spec)`` accepts a shipped name (``gpt2``), the name of a file in the user's model
folder (``$XDG_CONFIG_HOME/collbench/models/NAME.json``, default ``~/.config/...``), a path to a
collbench model file, or a path to a Hugging Face ``config.json`` (read locally; nothing is
downloaded), which is derived on the fly (:mod:`.hf`).
"""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import UsageError
from .model import ModelSpec, model_from_record


def user_model_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "collbench" / "models"


def shipped_names() -> list[str]:
    folder = resources.files("collbench.workload") / "models"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".json"))


def user_names() -> list[str]:
    folder = user_model_dir()
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.json"))


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read model file {path}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"model file {path} is not valid JSON: {exc.msg} (line {exc.lineno})") from None


def _from_file(path: Path) -> ModelSpec:
    record = _read_json(path)
    if isinstance(record, dict) and "collbench_model" not in record and "model_type" in record:
        from .hf import model_from_hf_config

        return model_from_hf_config(record, str(path))
    spec = model_from_record(record, str(path))
    return _with_path(spec, str(path))


def _with_path(spec: ModelSpec, path: str) -> ModelSpec:
    from dataclasses import replace

    return replace(spec, path=path)


def load_model(spec: str) -> ModelSpec:
    """A model by shipped name, user-folder name, or file path (collbench or Hugging Face)."""
    if spec in shipped_names():
        text = (resources.files("collbench.workload") / "models" / f"{spec}.json").read_text(encoding="utf-8")
        return model_from_record(json.loads(text), f"{spec}.json")
    user = user_model_dir() / f"{spec}.json"
    if user.is_file():
        return _from_file(user)
    path = Path(spec)
    if path.is_file():
        return _from_file(path)
    known = shipped_names() + user_names()
    raise UsageError(f"no model {spec!r}: give a file (a collbench model or a Hugging Face config.json) "
                     f"or one of {', '.join(known)}")


def all_models() -> list[ModelSpec]:
    """Every shipped model, then the user's (a broken user file is an error naming it)."""
    return [load_model(n) for n in shipped_names()] + [_from_file(user_model_dir() / f"{n}.json")
                                                      for n in user_names()]


__all__ = ["load_model", "all_models", "shipped_names", "user_names", "user_model_dir"]
