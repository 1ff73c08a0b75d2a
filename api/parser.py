"""How the API reads a request body: JSON in UTF-8, said so by its Content-Type, each key of each
object once. Anything else raises one of the errors below, which the endpoints answer (400, 415).
"""
import json

from django.utils.http import parse_header_parameters
from ninja.parser import Parser


class MalformedBody(Exception):
    """Not JSON (or not UTF-8, or nested past what Python reads)."""


class DuplicateKey(MalformedBody):
    """A key twice in one object: JSON leaves it to the reader, and Python keeps the last one, so
    `{"records": 1, "records": 4242}` would mean whatever the sender's library wrote last."""

    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


class NotJson(Exception):
    """A body whose Content-Type is not JSON: the sender meant something else by it."""


def is_json(content_type: str | None) -> bool:
    """`application/json` or a JSON-based type (`application/*+json`, RFC 6839), in UTF-8 (JSON's
    only encoding, RFC 8259: a charset parameter, if any, must say so)."""
    media_type, params = parse_header_parameters(content_type or "")
    kind, _, subtype = media_type.partition("/")
    return (kind == "application" and (subtype == "json" or subtype.endswith("+json"))
            and params.get("charset", "utf-8").lower() in {"utf-8", "utf8"})


def _each_key_once(pairs: list[tuple[str, object]]) -> dict:
    seen = {}
    for key, value in pairs:
        if key in seen:
            raise DuplicateKey(key)
        seen[key] = value
    return seen


class JsonParser(Parser):
    def parse_body(self, request):
        if not is_json(request.headers.get("Content-Type")):
            raise NotJson
        try:
            # Decoded here: json.loads would guess UTF-16 or UTF-32 from the bytes.
            return json.loads(request.body.decode(), object_pairs_hook=_each_key_once)
        except (ValueError, RecursionError) as error:  # bad JSON or UTF-8, absurd nesting
            raise MalformedBody from error
