"""`NO_WAIT_RETRY`: finetune_ops' retry policy without its waits, for tests on the simulator.

The one module of the package that imports the library's own code; the
simulator's modules stay independent of it.
"""

from __future__ import annotations

from finetune_ops import RetryPolicy

#: Retries as many times as the default policy, but at once: a test that injects
#: faults spends no time in backoff. Pass it as `JobManager(retry=NO_WAIT_RETRY)`.
NO_WAIT_RETRY = RetryPolicy(wait_initial=0, wait_max=0, wait_jitter=0)
