"""Evaluates flags with the official OpenFeature OFREP provider (PyPI openfeature-provider-ofrep).

Usage: python evaluate.py BASE_URL TOKEN SPEC_JSON
SPEC_JSON is a list of {"flag", "type": "string"|"object"|"boolean"|"float", "default"}.
Prints a JSON list of {"flag", "value", "variant", "reason", "error_code"}.
"""

import json
import sys

from openfeature import api
from openfeature.contrib.provider.ofrep import OFREPProvider
from openfeature.evaluation_context import EvaluationContext


def name(value):
    if value is None:
        return None
    return getattr(value, "value", value)


def main() -> None:
    base_url, token, spec = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    api.set_provider(OFREPProvider(base_url, headers_factory=lambda: {"Authorization": f"Bearer {token}"}, timeout=5.0))
    client = api.get_client()
    context = EvaluationContext(targeting_key="user-1")
    evaluate = {
        "string": client.get_string_details,
        "object": client.get_object_details,
        "boolean": client.get_boolean_details,
        "float": client.get_float_details,
    }
    results = []
    for item in spec:
        details = evaluate[item["type"]](item["flag"], item["default"], context)
        results.append(
            {
                "flag": item["flag"],
                "value": details.value,
                "variant": details.variant,
                "reason": name(details.reason),
                "error_code": name(details.error_code),
            }
        )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
