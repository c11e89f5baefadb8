"""Schemathesis against a live server: requests generated from the OpenAPI, every check, no failure.

Bounded: a fixed number of examples per operation (``IGPT_SCHEMA_EXAMPLES``, default 20),
derandomized, no deadline. Every check schemathesis has runs (server errors, status codes,
content types, response schemas and headers, negative and positive data, unsupported
methods, ...), so an undeclared 4xx, a 5xx or an answer outside the error model fails.
(The operations are driven from one test: schemathesis' pytest fixture loader does not run
under pytest 9.)

One configured exception: a gesture has rules JSON Schema cannot state (a box's x1 must
exceed x0, a click needs an include point), so for the operations that take a gesture a
schema-valid but degenerate gesture may be answered 422 (``positive_data_acceptance``).
"""

from __future__ import annotations

import os
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.config import SchemathesisConfig

from igpt_server.settings import Settings
from tests.api.live_server import live_server

EXAMPLES = int(os.environ.get("IGPT_SCHEMA_EXAMPLES", "20"))
ACCEPTED = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"]
CONFIG = {
    "operations": [
        {
            "include-path-regex": "/(gesture|chat|chat/stream)$",
            "checks": {"positive_data_acceptance": {"expected-statuses": [*ACCEPTED, "422"]}},
        }
    ]
}


def test_every_operation_answers_as_its_schema_says(tmp_path: Path) -> None:
    config = Settings(data_dir=tmp_path / "data", llm={"provider": "none"})  # type: ignore[arg-type]
    failures: dict[str, str] = {}
    with live_server(config) as url:
        schema = schemathesis.openapi.from_url(f"{url}/openapi.json", config=SchemathesisConfig.from_dict(CONFIG))
        operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
        assert len(operations) >= 15
        for operation in operations:

            @given(case=operation.as_strategy())
            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            def check(case: schemathesis.Case) -> None:
                case.call_and_validate()

            try:
                check()
            except Exception as exc:  # collect every operation's failure, then report them all
                failures[operation.label] = str(exc)[:2000]
    assert not failures, "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())
