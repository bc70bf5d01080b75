"""The engine: Janus-family backends, our own batched and branchable decoding loop, guidance, cost accounting.

Plain Python + torch, no Qt: the CLI, the benchmarks, the tests and the desktop app's worker thread all drive it.
Modules:
- `backend`:  load a Janus / Janus-Pro folder offline; prompt -> ids; tokens <-> pixels.
- `sampling`: 2-way and 3-way classifier-free guidance, temperature / top-k / top-p, seeded sampling.
- `decode`:   decoding state with a KV cache carried across stages (prefill, branch, select, merge, step).
- `cost`:     the cost record (tokens, forward token-rows and FLOPs per model role, calls, wall seconds).
- `cancel`:   cooperative cancel tokens checked every step.
"""
