"""Real-time serving: ``speechlm serve`` (websocket protocol + web page) and its client.

See docs/serve.md for the protocol and :mod:`speechlm.serve.session` for what a model must
provide to be served.
"""

import os

# Two workers per usable core: a session's frame waits behind the other calls of its own worker
# (a turn-ending frame costs 55-67 ms of CPU), and more, smaller queues let the OS interleave
# them. Measured with the demo models at 8 sessions on 2 cores, runs alternated: 4 workers p95
# 70.3 / 74.6 / 72.7 ms (real time), 2 workers 103.5 / 85.9 / 99.9 ms; RSS doubles (2.2 GB).
DEFAULT_WORKERS = 2 * len(os.sched_getaffinity(0))
