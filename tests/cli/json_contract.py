"""Validates airlock's --json documents against the committed schemas, independently of the Rust
code: Python's jsonschema (Draft 2020-12) reads schemas/*.schema.json.

    python json_contract.py SCHEMA_DIR CASES.json

CASES.json is a list of {"name": ..., "schema": "report-pack.schema.json", "doc": {...}}. Besides
the schema, each document's top-level fields must all be declared by the schema (a field the
printer emits but the schema does not name is drift). Prints one line per failure; exits 1 if any.
"""

import json
import pathlib
import sys

import jsonschema

schema_dir = pathlib.Path(sys.argv[1])
cases = json.loads(pathlib.Path(sys.argv[2]).read_text())
failures = []
for case in cases:
    schema = json.loads((schema_dir / case["schema"]).read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    for err in validator.iter_errors(case["doc"]):
        path = "/".join(str(p) for p in err.absolute_path)
        failures.append(f"{case['name']}: {case['schema']}: at /{path}: {err.message}")
    declared = set(schema.get("properties", {}))
    for key in case["doc"]:
        if key not in declared:
            failures.append(f"{case['name']}: {case['schema']}: field {key!r} is not in the schema")
for f in failures:
    print(f)
print(f"{len(cases)} documents checked, {len(failures)} failures")
sys.exit(1 if failures else 0)
