"""papers-digest: the trending ML papers of the day, ranked per subscriber, mailed once a day.

The domain library. It imports no Prefect: `flows/` wires these functions into Prefect flows. The
version is the installed package's (``digest.config.package_version``).
"""
