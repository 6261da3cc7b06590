"""The soak (`make soak`, `python -m bench.soak`): a real redis-server with its append-only
file, `relay mock-upstream`, two `relay serve` on that Redis and nginx in front, a mixed
load through nginx while relays are drained and killed and Redis is frozen and restarted;
then every session is read back and checked, and the report goes into docs/reliability.md.

- `deployment`, `configs`: the processes and their configuration; the faults done to them;
- `load`, `frames`: the clients and what they take from each stream;
- `faults`: when which fault happens, and the memory watch;
- `traces`: what is recorded; `checks`, `logscan`: the verdict; `report`: the figures.
"""
