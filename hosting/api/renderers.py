"""JSON rendering with orjson: what DRF's JSONRenderer writes (compact UTF-8, datetimes
in UTC as ...Z, U+2028/U+2029 escaped), several times faster for a page of rows."""

from __future__ import annotations

import datetime
import decimal
import uuid
from typing import Any

import orjson
from django.utils.functional import Promise
from rest_framework.renderers import JSONRenderer

OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_UTC_Z
# JSON allows these two raw, JavaScript string literals did not: DRF escapes them.
LINE_SEPARATORS = ((b"\xe2\x80\xa8", b"\\u2028"), (b"\xe2\x80\xa9", b"\\u2029"))


def _default(value: Any) -> Any:
    """What orjson does not encode itself, the way DRF's JSONEncoder does."""
    if isinstance(value, Promise):  # lazy translation strings
        return str(value)
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime.timedelta):
        return str(value.total_seconds())
    if isinstance(value, bytes):
        return value.decode()
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "__getitem__") and hasattr(value, "keys"):
        return dict(value)
    if hasattr(value, "__iter__"):
        return list(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


class ORJSONRenderer(JSONRenderer):
    """`application/json` through orjson (an `indent` parameter gives 2-space indents)."""

    def render(self, data, accepted_media_type=None, renderer_context=None) -> bytes:
        if data is None:
            return b""
        options = OPTIONS
        if self.get_indent(accepted_media_type or "", renderer_context or {}):
            options |= orjson.OPT_INDENT_2
        out = orjson.dumps(data, default=_default, option=options)
        if b"\xe2\x80" in out:
            for raw, escaped in LINE_SEPARATORS:
                out = out.replace(raw, escaped)
        return out
