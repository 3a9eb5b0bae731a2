"""mkdocs hook: the config reference page, generated from the live JSON Schema at build time.

Every field of the run config gets a row: its dotted path, type, default, allowed
values and description, so the page cannot drift from ``kerasflow/config.py``.
``render()`` is also what ``tests/test_docs.py`` checks.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

PAGE = "config-reference.md"


def _ref_name(prop: dict[str, Any]) -> str | None:
    ref = prop.get("$ref")
    return ref.rsplit("/", 1)[-1] if ref else None


def _type_of(prop: dict[str, Any]) -> str:
    if "$ref" in prop:
        return "section"
    if "anyOf" in prop:
        return " or ".join(dict.fromkeys(_type_of(p) for p in prop["anyOf"]))
    if "enum" in prop:
        return "choice"
    if "const" in prop:
        return "choice"
    kind = prop.get("type", "any")
    if kind == "array":
        if "prefixItems" in prop:
            return "[" + ", ".join(_type_of(p) for p in prop["prefixItems"]) + "]"
        return f"list of {_type_of(prop.get('items', {}))}"
    if kind == "object":
        extra = prop.get("additionalProperties")
        return f"mapping to {_type_of(extra)}" if isinstance(extra, dict) else "mapping"
    return {"integer": "int", "number": "float", "boolean": "bool", "string": "str"}.get(kind, kind)


def _allowed(prop: dict[str, Any]) -> str:
    values: list[Any] = []
    for option in prop.get("anyOf", [prop]):
        values += option.get("enum", [])
        if "const" in option:
            values.append(option["const"])
    bounds = []
    for key, sign in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="),
                      ("exclusiveMaximum", "<")):  # fmt: skip
        for option in prop.get("anyOf", [prop]):
            if key in option:
                bounds.append(f"{sign} {option[key]}")
    if values:
        return ", ".join(f"`{json.dumps(v)}`" for v in values)
    return ", ".join(bounds)


def _default(prop: dict[str, Any]) -> str:
    if "default" not in prop:
        return "(section)" if _ref_name(prop) else ""
    return f"`{json.dumps(prop['default'])}`"


def _sections(schema: dict[str, Any]):
    """(dotted path, definition) of every section, depth first from the top."""
    defs = schema["$defs"]
    queue = [("", schema)]
    while queue:
        path, definition = queue.pop(0)
        yield path, definition
        for name, prop in definition.get("properties", {}).items():
            for option in prop.get("anyOf", [prop]):
                ref = _ref_name(option)
                if ref:
                    queue.append((f"{path}.{name}" if path else name, defs[ref]))


def _cell(text: str) -> str:
    text = re.sub(r":\w+:`~?([^`]+)`", r"`\1`", str(text))  # Sphinx roles read as code
    return " ".join(text.split()).replace("|", "\\|")


def render(schema: dict[str, Any] | None = None) -> str:
    """The Markdown of the config reference page."""
    if schema is None:
        from kerasflow.config import json_schema

        schema = json_schema()
    out = [
        "# Config reference",
        "",
        "Every field of the run config, generated from its JSON Schema when the site is built",
        "(`kerasflow config schema` prints the schema; `kerasflow config show CONFIG` prints a",
        "config with every default filled in). A config only writes what differs from these",
        "defaults. Packaged configs start with `# yaml-language-server: $schema=schema.json`, so",
        "editors with the YAML language server complete and check fields.",
        "",
    ]
    for path, definition in _sections(schema):
        if not path:
            continue
        out += [f"## `{path}`", ""]
        doc = definition.get("description", "")
        if doc:
            out += [re.sub(r":\w+:`~?([^`]+)`", r"`\1`", doc.strip()), ""]
        out += ["| field | type | default | allowed | description |", "|---|---|---|---|---|"]
        for name, prop in definition.get("properties", {}).items():
            row = [
                f"`{path}.{name}`",
                _type_of(prop),
                _default(prop),
                _allowed(prop),
                prop.get("description", ""),
            ]
            out.append("| " + " | ".join(_cell(c) for c in row) + " |")
        out.append("")
    return "\n".join(out)


def on_files(files, config):
    """Add the generated page to the site (mkdocs >= 1.6)."""
    from mkdocs.structure.files import File

    # The schema of this checkout, not of whatever kerasflow is installed.
    root = str(Path(config.config_file_path).resolve().parent)
    if root not in sys.path:
        sys.path.insert(0, root)
    files.append(File.generated(config, PAGE, content=render()))
    return files
