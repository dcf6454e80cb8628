"""The configuration reference in Markdown, generated from the schema (so it cannot drift):
``python -m config.reference`` prints it; the README holds a copy between the
``config-reference`` markers, which a test keeps equal to this output."""

from __future__ import annotations

import json
from typing import Any

from config.schema import SCHEMA


def _kind(spec: dict[str, Any]) -> str:
    if "enum" in spec:
        return " \\| ".join(json.dumps(value) for value in spec["enum"])
    kind = spec.get("type", "")
    if kind == "array":
        return "list of strings"
    if isinstance(kind, list):
        return " or ".join(kind)
    limits = []
    for word, key in (("≥", "minimum"), (">", "exclusiveMinimum"), ("≤", "maximum")):
        if key in spec:
            limits.append(f"{word} {spec[key]}")
    if "maxLength" in spec:
        limits.append(f"≤ {spec['maxLength']} chars")
    return str(kind) + (f" ({', '.join(limits)})" if limits else "")


def _default(spec: dict[str, Any], required: bool) -> str:
    if required:
        return "**required**"
    if "default" not in spec:
        return ""
    return f"`{json.dumps(spec['default'])}`"


def reference() -> str:
    lines = []
    for table, spec in SCHEMA["properties"].items():
        required_table = table in SCHEMA.get("required", [])
        lines.append(f"#### `[{table}]`{' (required)' if required_table else ''}")
        lines.append("")
        about = spec.get("description", "")
        lines.append(about[:1].upper() + about[1:] + ".")
        lines.append("")
        properties = spec.get("properties")
        if not properties:
            lines.append("Any OCPP configuration key of the table below, as `Name = value`.")
            lines.append("")
            continue
        lines.append("| Key | Type | Default | Meaning |")
        lines.append("|---|---|---|---|")
        required = set(spec.get("required", []))
        for key, item in properties.items():
            meaning = item.get("description", "").replace("|", "\\|")
            lines.append(
                f"| `{key}` | {_kind(item)} | {_default(item, key in required)} | {meaning} |"
            )
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    print(reference(), end="")
