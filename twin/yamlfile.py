"""Reading a YAML file that must hold a mapping, with errors that name the file and what is wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twin.model.config import TwinInputError


def load_mapping(path: Path, expected: str) -> dict[str, Any]:
    """The file's mapping; TwinInputError("scenario", ...) if it is missing, not YAML, or not a
    mapping (`expected` says what the mapping should hold)."""
    import yaml

    try:
        doc = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise TwinInputError("scenario", f"no such file: {path}") from None
    except yaml.YAMLError as e:
        raise TwinInputError("scenario", f"{path} is not valid YAML: {e}") from None
    if not isinstance(doc, dict):
        raise TwinInputError("scenario", f"{path} must be a mapping with {expected}")
    return doc
