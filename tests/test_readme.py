"""The README's configuration reference is the schema's, generated: it cannot drift."""

from __future__ import annotations

from pathlib import Path

from config.reference import reference
from config.schema import SCHEMA

README = Path(__file__).parent.parent / "README.md"


def test_configuration_reference_in_the_readme_is_the_generated_one() -> None:
    text = README.read_text()
    start = text.index("<!-- config-reference:start")
    start = text.index("\n", start) + 1
    end = text.index("<!-- config-reference:end -->")
    assert text[start:end].strip() == reference().strip(), "run: python -m config.reference"


def test_every_key_of_the_schema_is_described() -> None:
    for table, spec in SCHEMA["properties"].items():
        assert spec.get("description"), table
        for key, item in spec.get("properties", {}).items():
            assert item.get("description"), f"{table}.{key}"


def test_the_two_commands_come_first() -> None:
    text = README.read_text()
    first_block = text[text.index("```sh") : text.index("```", text.index("```sh") + 5)]
    assert first_block.splitlines()[1].startswith("make demo")
    assert first_block.splitlines()[2].startswith("make test")
