"""JSON-schema validity: the completion (or its ```json block) parses as JSON and satisfies a schema.

Validation uses the ``jsonschema`` library (the reference implementation of the JSON Schema drafts;
we do not write our own validator). It is imported only when a schema is set, so a reward that
checks "is valid JSON" alone needs nothing beyond the standard library.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tuneforge.config.rewards import JsonSchemaReward
from tuneforge.errors import ConfigError, TuneforgeError
from tuneforge.rewards.builtin import RewardFn

_FENCE = re.compile(r"```(?:json)?\s*\n(.*?)```", re.DOTALL)


def json_payload(completion: str) -> Any:
    """The JSON the completion holds: a fenced ```json block if there is one, else the whole text; raises ValueError."""
    fenced = _FENCE.findall(completion)
    return json.loads(fenced[-1] if fenced else completion.strip())


def _validator_class():
    try:
        # lazy: jsonschema is optional (not a core dependency); only a json_schema reward with a schema imports it
        import jsonschema
    except ImportError:
        raise TuneforgeError(
            "the json_schema reward with a schema needs the jsonschema package, which is not installed",
            hint="pip install 'jsonschema>=4,<5', or drop schema/schema_file/schema_column to check JSON validity only",
        ) from None
    return jsonschema


def _schema_from(spec: JsonSchemaReward) -> dict | None:
    if spec.schema_file:
        path = Path(spec.schema_file)
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"objective.rewards json_schema.schema_file: cannot read {path}: {exc}", hint="give a JSON Schema file") from None
    return spec.json_schema


def json_schema_reward(spec: JsonSchemaReward) -> RewardFn:
    fixed = _schema_from(spec)
    lib = _validator_class() if (fixed is not None or spec.schema_column) else None
    if lib is not None and fixed is not None:
        try:
            lib.validators.validator_for(fixed).check_schema(fixed)
        except lib.SchemaError as exc:
            raise ConfigError(f"objective.rewards json_schema: the schema is not a valid JSON Schema: {exc.message}", hint="fix the schema") from None

    def reward(prompts: Sequence[str], completions: Sequence[str], **columns: Any) -> list[float | None]:
        per_row = columns.get(spec.schema_column) if spec.schema_column else None
        out: list[float | None] = []
        for i, completion in enumerate(completions):
            schema = fixed
            if per_row is not None:
                schema = per_row[i]
                if schema is None:
                    out.append(None)
                    continue
                schema = json.loads(schema) if isinstance(schema, str) else schema
            try:
                payload = json_payload(completion)
            except ValueError:
                out.append(0.0)
                continue
            if schema is None or lib is None:
                out.append(1.0)
                continue
            out.append(1.0 if lib.validators.validator_for(schema)(schema).is_valid(payload) else spec.partial)
        return out

    return reward
