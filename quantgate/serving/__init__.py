"""Serving: one OpenAI-compatible server per precision and the clients that talk to it.

- :mod:`.processes`: one process group, killed whole (PDEATHSIG, escaped descendants)
- :mod:`.servers`: a server process as a context manager, with readiness checks
- :mod:`.engines`: a suite's precision -> engine, checkpoint and command line (``ServerPlan``);
  stopping a server and waiting for its GPU memory
- :mod:`.gpus`: GPU slices per pytest-xdist worker, GPU memory release
- :mod:`.client`: the concurrent chat client of quantgate's own runners (retries, cache)
- :mod:`.throughput`: generation throughput on a fixed prompt set
"""
