"""A bounded schemathesis run over the OpenAPI document: every operation, zero failures.

Every operation gets a few deterministic examples (hypothesis ``derandomize``), valid ones
and invalid ones, sent with an admin key to an in-process app on the tiny item-kNN artifact
and a SQLite store; schemathesis's default checks judge the answers: no 5xx, only documented
status codes and content types, bodies matching the response schemas, invalid input
refused, valid input accepted, and the API key enforced. Bounded so it runs in seconds.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is in the dev extra")
from hypothesis import HealthCheck, given, settings  # noqa: E402  (after the importorskip)
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.specs.openapi.checks import positive_data_acceptance  # noqa: E402

from recforge.serving.app import create_app  # noqa: E402

#: examples per operation and mode: enough to reach each field's edge cases, few enough for CI;
#: RECFORGE_FUZZ_EXAMPLES=500 runs a deeper search locally
MAX_EXAMPLES = int(os.environ.get("RECFORGE_FUZZ_EXAMPLES", "20"))
#: checks that do not apply to an operation, and why
EXCLUDED = {
    # a schema-valid model_dir that holds no artifact is rightly refused (422, old model kept):
    # no schema can say which directories hold a model
    "POST /v1/admin/reload": [positive_data_acceptance],
}


@pytest.fixture(scope="module")
def schema(tmp_path_factory: pytest.TempPathFactory, tiny_itemknn_dir: Path, keys) -> object:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        app = create_app(tiny_itemknn_dir, f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'events.db'}",
                         keys.file)
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def _fuzz(operation: Any, mode: GenerationMode, key: str) -> None:
    """Run `MAX_EXAMPLES` deterministic cases of one operation; raises on the first failure."""
    excluded = EXCLUDED.get(operation.label, [])

    @settings(max_examples=MAX_EXAMPLES, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode, headers={"X-API-Key": key}))
    def check(case: Any) -> None:
        case.call_and_validate(excluded_checks=excluded)

    check()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
def test_every_operation_conforms_to_the_openapi_document(schema, keys, mode: GenerationMode) -> None:
    failures = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 12
    for operation in operations:
        try:
            _fuzz(operation, mode, keys.admin)
        except Unsatisfiable:  # no invalid request exists: nothing in it but the key
            assert mode is GenerationMode.NEGATIVE, operation.label
        except Exception as exc:  # collect every operation's failure, then report them all
            failures.append(f"{operation.label}: {type(exc).__name__}: {exc}")
    assert not failures, "\n\n".join(failures)
