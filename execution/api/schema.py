"""The OpenAPI schema's error responses, added to every operation (a drf-spectacular
postprocessing hook, SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"]).

What each operation can answer besides its own responses, as execution.api.errors, DRF and the
middleware write them: 400 (bad input: field messages, or `detail` for a body that is not JSON;
lists: a bad filter or page parameter), 401/403 (no or bad credentials), 404 (another owner's
object or none), 413 (a body over DATA_UPLOAD_MAX_MEMORY_SIZE); a cursor-paginated list also
404 (an invalid cursor). An operation's own declaration of a status code wins.
"""

from __future__ import annotations

from typing import Any

ERROR_MESSAGE = "ErrorMessage"
FIELD_ERRORS = "FieldErrors"

COMPONENTS: dict[str, dict[str, Any]] = {
    ERROR_MESSAGE: {
        "type": "object",
        "description": "An error: `detail` for people; `code`, when given, for programs.",
        "properties": {"detail": {"type": "string"}, "code": {"type": "string"}},
        "required": ["detail"],
    },
    FIELD_ERRORS: {
        "type": "object",
        "description": "Bad input: each offending field (or parameter, or `non_field_errors`) with its messages; "
        "`detail` alone when the body could not be parsed.",
        "additionalProperties": {},
    },
}


def _ref(name: str) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}}}


def add_error_responses(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    result.setdefault("components", {}).setdefault("schemas", {}).update(COMPONENTS)
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            parameters = {p["name"] for p in operation.get("parameters", []) if p.get("in") == "query"}
            errors: dict[str, dict[str, Any]] = {
                "401": {"description": "No or invalid credentials.", **_ref(ERROR_MESSAGE)},
                "403": {"description": "Not allowed.", **_ref(ERROR_MESSAGE)},
            }
            if method in {"post", "put", "patch"} or parameters:
                errors["400"] = {"description": "Bad input (nothing was written).", **_ref(FIELD_ERRORS)}
            if "{" in path or "cursor" in parameters:
                errors["404"] = {
                    "description": "Not found, or not yours (or an invalid cursor).",
                    **_ref(ERROR_MESSAGE),
                }
            if method in {"post", "put", "patch"}:
                errors["413"] = {"description": "Request body over the size limit.", **_ref(ERROR_MESSAGE)}
            for code, response in errors.items():
                operation["responses"].setdefault(code, response)
    return result
