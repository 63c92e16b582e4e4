"""``asc config show``: the resolved config, each key with its documentation.

The documentation is the comment beside (or the comment lines just above) each field of
the schema's dataclasses in :mod:`asc.config_schema`, the one source of truth for every key.
"""

from __future__ import annotations

import dataclasses
import inspect
import re

import yaml
from omegaconf import DictConfig, OmegaConf

from asc import config_schema as schema


def _field_docs(cls) -> dict[str, str]:
    """{field: documentation} from the comments in a dataclass's source."""
    docs, above = {}, []
    for line in inspect.getsource(cls).splitlines()[1:]:
        stripped = line.strip()
        if stripped.startswith("#"):
            above.append(stripped.lstrip("# ").rstrip())
            continue
        m = re.match(r"\s+(\w+)\s*:\s*[^=]+(?:=.*?)?(?:#\s*(.*))?$", line)
        if m and not stripped.startswith(('"""', "def ", "@")):
            docs[m.group(1)] = " ".join([*above, m.group(2) or ""]).strip()
        above = []
    return docs


def key_docs(cls=schema.Config, prefix: str = "") -> dict[str, str]:
    """{dotted key: documentation} for every key of the schema."""
    out = {}
    docs = _field_docs(cls)
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        out[key] = docs.get(f.name, "")
        if dataclasses.is_dataclass(f.type if isinstance(f.type, type) else None):
            out.update(key_docs(f.type, key + "."))
        else:
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else None
            if dataclasses.is_dataclass(default):
                out.update(key_docs(type(default), key + "."))
    return out


def _scalar(value) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("...").strip()


def show(cfg: DictConfig) -> str:
    """YAML of the resolved config with each key's documentation as a comment."""
    docs = key_docs()
    lines: list[str] = []

    def walk(node: dict, prefix: str, depth: int) -> None:
        for name, value in node.items():
            key = f"{prefix}{name}"
            doc = docs.get(key, "")
            if key.startswith("trainer.") and not doc:
                doc = "lightning.Trainer argument"
            comment = f"  # {doc}" if doc else ""
            pad = "  " * depth
            if isinstance(value, dict):
                lines.append(f"{pad}{name}:{comment}")
                walk(value, key + ".", depth + 1)
            else:
                lines.append(f"{pad}{name}: {_scalar(value)}{comment}")

    walk(OmegaConf.to_container(cfg, resolve=True), "", 0)
    return "\n".join(lines)
