"""papers-digest: the trending ML papers of the day, ranked per subscriber, mailed once a day.

The domain library. It imports no Prefect: `flows/` wires these functions into Prefect flows.
"""

__version__ = "0.1.0"
