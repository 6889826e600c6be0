"""Write tests/spec/fine-tunes.json: the fine-tunes part of the public Together OpenAPI spec.

The tests check the simulator's answers and the records against the API's
shapes. They need only facts: the fine-tunes operations (paths, methods,
parameters, status codes) and the schemas those reach (names, types, formats,
enums, defaults, required fields). This script keeps exactly that and drops
the prose (descriptions, summaries, code samples), so the project carries a
small file of its own instead of depending on a copy of the full spec.

    python scripts/compact_spec.py [SPEC] [--check]

SPEC defaults to ../shared/reference/together-openapi.yaml beside the
checkout. --check exits 1 when the committed file differs from what the spec
gives (CI runs it where the spec is at hand). Needs PyYAML.
"""

from __future__ import annotations

import argparse
import json
import sys
from http import HTTPStatus
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SPEC = ROOT.parent / "shared/reference/together-openapi.yaml"
OUTPUT = ROOT / "tests/spec/fine-tunes.json"

#: The spec's own licence, which travels with anything derived from it.
LICENCE = {
    "name": "MIT",
    "x-copyright": "Copyright (c) TogetherAI [https://together.ai]",
    "x-source": "the public Together OpenAPI spec (together-openapi.yaml), prose removed",
}
PATH_PREFIXES = ("/fine-tunes", "/finetune/")
METHODS = ("get", "post", "put", "patch", "delete")
# Keys of a schema object that state facts about the data.
SCHEMA_KEYS = frozenset(
    {
        "type",
        "format",
        "enum",
        "const",
        "required",
        "properties",
        "items",
        "oneOf",
        "anyOf",
        "allOf",
        "$ref",
        "nullable",
        "default",
        "additionalProperties",
        "deprecated",
    }
)
PARAMETER_KEYS = ("name", "in", "required", "deprecated")


def _schema(node: Any) -> Any:
    if isinstance(node, list):
        return [_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "properties":
            out[key] = {name: _schema(prop) for name, prop in value.items()}
        elif key in SCHEMA_KEYS:
            out[key] = _schema(value)
    return out


def _content(content: dict[str, Any]) -> dict[str, Any]:
    return {
        media: {"schema": _schema(body["schema"])} if "schema" in body else {}
        for media, body in content.items()
    }


def _operation(operation: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "parameters" in operation:
        out["parameters"] = [
            {
                **{key: param[key] for key in PARAMETER_KEYS if key in param},
                "schema": _schema(param.get("schema", {})),
            }
            for param in operation["parameters"]
        ]
    if "requestBody" in operation:
        body = operation["requestBody"]
        out["requestBody"] = {
            "required": bool(body.get("required", False)),
            "content": _content(body.get("content", {})),
        }
    responses: dict[str, Any] = {}
    for code, response in operation.get("responses", {}).items():
        # OpenAPI requires a description; the status phrase is a fact, the spec's is prose.
        entry: dict[str, Any] = {"description": HTTPStatus(int(code)).phrase}
        if "content" in response:
            entry["content"] = _content(response["content"])
        responses[str(code)] = entry
    out["responses"] = responses
    return out


def _refs(node: Any, found: set[str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
            found.add(ref.rsplit("/", 1)[-1])
        for value in node.values():
            _refs(value, found)
    elif isinstance(node, list):
        for item in node:
            _refs(item, found)


def compact(spec: dict[str, Any]) -> dict[str, Any]:
    """The fine-tunes operations of `spec` and every schema they reach, without prose."""
    paths = {
        path: {method: _operation(item[method]) for method in METHODS if method in item}
        for path, item in spec["paths"].items()
        if path.startswith(PATH_PREFIXES)
    }
    all_schemas = spec["components"]["schemas"]
    names: set[str] = {"ErrorData"}
    _refs(paths, names)
    schemas: dict[str, Any] = {}
    while pending := sorted(names - schemas.keys()):
        for name in pending:
            original = all_schemas[name]
            schemas[name] = _schema(original)
            if isinstance(original.get("example"), dict):
                schemas[name]["example"] = original["example"]  # sample data, no prose
            _refs(schemas[name], names)
    return {
        "openapi": spec["openapi"],
        "info": {
            "title": "Together fine-tunes API (compact)",
            "version": str(spec["info"].get("version", "")),
            "license": LICENCE,
        },
        "servers": [{"url": server["url"]} for server in spec.get("servers", [])],
        "security": spec.get("security", []),
        "paths": dict(sorted(paths.items())),
        "components": {
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
            "schemas": dict(sorted(schemas.items())),
        },
    }


def render(spec_path: Path) -> str:
    """The compact file's text for the spec at `spec_path`."""
    with spec_path.open(encoding="utf-8") as handle:
        spec = yaml.load(handle, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    return json.dumps(compact(spec), indent=1, sort_keys=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", nargs="?", type=Path, default=DEFAULT_SPEC)
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args(argv)
    text = render(args.spec)
    if args.check:
        current = OUTPUT.read_text(encoding="utf-8") if OUTPUT.is_file() else ""
        if current != text:
            stale = f"{OUTPUT.relative_to(ROOT)} is stale: run scripts/compact_spec.py"
            print(stale, file=sys.stderr)
            return 1
        print(f"{OUTPUT.relative_to(ROOT)} matches {args.spec.name}")
        return 0
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUTPUT.relative_to(ROOT)} ({len(text):,} characters)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
