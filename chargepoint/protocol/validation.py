"""OCPP-J 1.6 RPC checks of what the CSMS sends, with the CallError codes of OCPP-J 1.6 §4.2.3.

The ``ocpp`` library answers schema violations with "FormatViolation", the OCPP 2.0 spelling;
OCPP 1.6 keeps "FormationViolation" and "OccurenceConstraintViolation" (OCPP-J 1.6 errata §5:
"Do not fix ... might break implementations"). Its schema errors also all become
FormatViolation. This module maps each failed JSON-schema rule to the 1.6 code that describes
it, reading the code descriptions of Table 7 the way the 1.6 terms were first defined
(XML-schema facets of the SOAP version):

* ``type`` → TypeConstraintViolation ("violates data type constraints");
* ``required``, ``minItems``, ``maxItems`` → OccurenceConstraintViolation (cardinality);
* ``enum``, ``maxLength``, ``minLength``, ``minimum``, ``maximum``, ``pattern``, ``format``,
  ``multipleOf`` → PropertyConstraintViolation ("a field contains an invalid value");
* anything else (``additionalProperties``, a payload that is not an object, a broken frame)
  → FormationViolation ("syntactically incorrect or not conform the PDU structure").
"""

from __future__ import annotations

import decimal
import json
import re
from dataclasses import dataclass, field
from typing import Any

from jsonschema import ValidationError
from jsonschema.exceptions import best_match
from ocpp.messages import get_validator

FORMATION = "FormationViolation"
OCCURRENCE = "OccurenceConstraintViolation"  # sic: the OCPP 1.6 spelling
PROPERTY = "PropertyConstraintViolation"
TYPE = "TypeConstraintViolation"

_CODES = {
    "type": TYPE,
    "required": OCCURRENCE,
    "minItems": OCCURRENCE,
    "maxItems": OCCURRENCE,
    "enum": PROPERTY,
    "maxLength": PROPERTY,
    "minLength": PROPERTY,
    "minimum": PROPERTY,
    "maximum": PROPERTY,
    "exclusiveMinimum": PROPERTY,
    "exclusiveMaximum": PROPERTY,
    "pattern": PROPERTY,
    "format": PROPERTY,
    "multipleOf": PROPERTY,
}

# Like the library: these schemas hold decimals with one digit (21.4), which float would spoil.
_DECIMAL_ACTIONS = {"SetChargingProfile", "RemoteStartTransaction"}

# OCPP-J 1.6 §4.1.4: a message id is a string of at most 36 characters.
MAX_MESSAGE_ID = 36
_LEADING_ID = re.compile(r'^\s*\[\s*2\s*,\s*"((?:[^"\\]|\\.){1,36})"')


@dataclass(frozen=True, slots=True)
class RpcFault:
    """Why a message from the CSMS cannot be processed, as a CallError would say it."""

    code: str
    description: str
    details: dict[str, Any] = field(default_factory=dict)


def validate_call_payload(action: str, payload: Any) -> RpcFault | None:
    """Check a CALL's payload against the official OCPP 1.6 JSON schema of ``action``."""
    if not isinstance(payload, dict):
        return RpcFault(FORMATION, f"the payload of {action} must be a JSON object")
    if action in _DECIMAL_ACTIONS:
        validator = get_validator(2, action, "1.6", parse_float=decimal.Decimal)
        payload = json.loads(json.dumps(payload), parse_float=decimal.Decimal)
    else:
        validator = get_validator(2, action, "1.6")
    error = best_match(validator.iter_errors(payload))
    if error is None:
        return None
    return _fault(action, error)


def _fault(action: str, error: ValidationError) -> RpcFault:
    code = _CODES.get(str(error.validator), FORMATION)
    where = "/".join(str(part) for part in error.absolute_path) or "payload"
    return RpcFault(code, f"{action} {where}: {error.message}"[:200], {"path": where})


def message_id_of(raw: str) -> str | None:
    """The message id of something that starts like a CALL, even if the rest is broken."""
    match = _LEADING_ID.match(raw)
    return match.group(1) if match else None
