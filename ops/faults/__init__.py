"""Fault drills: the whole pipeline under steady load while workers are SIGKILLed,
Redis restarts and client connections drop; then an audit of what Redis holds.

    python -m ops.faults run [--seconds 60] [--rate 50] [--fsync everysec|always]
                             [--kill routing,dispatch,timers] [--restart-redis N] [--drop-connections N]

Tests call `run_drill(DrillOptions(...))` and assert on the report's tally.

The parts: _drill.py runs one drill; _supervisor.py starts the workers as the
Procfile does and restarts them; _customers.py adds contacts through ingest and
retries through outages; _agents.py accepts, replies and closes; _injector.py
injects the faults; _audit.py counts from Redis; _report.py prints the result.
"""

from ops.faults._audit import Tally
from ops.faults._drill import DrillOptions, DrillReport, run_drill

__all__ = ["DrillOptions", "DrillReport", "Tally", "run_drill"]
