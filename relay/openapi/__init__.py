"""The OpenAPI 3.1 description of relay's HTTP API (`/openapi.json`) and the docs page
rendered from it (`/docs`).

`schemas` turns relay's typed structs into JSON Schemas (by hand only where the block
families of `relay.wire.decoding` decode what msgspec cannot describe), `spec` builds
the document, `docs_page` renders it as one self-contained HTML page, and `routes`
serves both. The spec sits above the front doors it describes, below `relay.app`.
"""
