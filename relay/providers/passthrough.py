"""A request body with the client's same-format passthrough fields merged in. Pure: no I/O.

A front door keeps the fields relay does not interpret (`top_k`, `seed`, `metadata`, …)
as `Passthrough(kind, fields)`. An upstream of that kind gets them at the top level of
its body, their values written verbatim (`msgspec.Raw`); an upstream of another kind
never does. Every name the upstream's request type declares is relay's, sent or not:
relay's value wins, and a passthrough field of that name is dropped (so no key repeats).
"""

from __future__ import annotations

import msgspec

from relay.vocabulary import Passthrough, UpstreamKind

ENCODER = msgspec.json.Encoder()


def encode_body(body: msgspec.Struct, passthrough: Passthrough | None, kind: UpstreamKind) -> bytes:
    """`body` as JSON, followed by the passthrough fields meant for `kind`."""
    encoded = ENCODER.encode(body)
    if passthrough is None or passthrough.kind != kind:
        return encoded
    owned = body.__struct_fields__
    extra = {name: raw for name, raw in passthrough.fields.items() if name not in owned}
    if not extra:
        return encoded
    return _joined(encoded, ENCODER.encode(extra))


def _joined(first: bytes, second: bytes) -> bytes:
    """Two encoded JSON objects as one: `{"a":1}` and `{"b":2}` → `{"a":1,"b":2}`."""
    if first == b"{}":
        return second
    return first[:-1] + b"," + second[1:]
