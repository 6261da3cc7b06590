"""relay-client.d.ts type-checks under `tsc --strict`, together with
tests/web/relay_client_usage.ts: an app's use of every part of the API, and the mistakes
the types must refuse (each under `@ts-expect-error`, which fails when its line compiles).

TypeScript is the pinned devDependency of tests/node (`npm ci` there); without node or
it, the test skips and says why, and fails under RELAY_REQUIRE_ALL=1.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.node_scripts import NODE_DIR, require_node, script_env

USAGE = Path(__file__).with_name("relay_client_usage.ts")
DECLARATIONS = Path(__file__).parents[2] / "relay" / "web" / "relay-client.d.ts"  # USAGE imports it
TSC = NODE_DIR / "node_modules" / "typescript" / "bin" / "tsc"
TSC_TIMEOUT_S = 120.0
# What a bundler-built app of today compiles with; `lib` is the default for the target
# (with the DOM: the client's types name Storage and the page's globals).
TSC_OPTIONS = ["--strict", "--noEmit", "--target", "es2022", "--module", "es2022",
               "--moduleResolution", "bundler"]  # fmt: skip


async def test_the_d_ts_type_checks_strictly_with_an_apps_usage() -> None:
    node = require_node()
    process = await asyncio.create_subprocess_exec(
        node, str(TSC), *TSC_OPTIONS, str(DECLARATIONS), str(USAGE),
        cwd=USAGE.parent, env=script_env({}),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    async with asyncio.timeout(TSC_TIMEOUT_S):
        output, _ = await process.communicate()
    assert process.returncode == 0, f"tsc {' '.join(TSC_OPTIONS)}:\n{output.decode()}"
