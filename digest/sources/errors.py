"""Errors every listing source raises."""


class ListingFormatError(ValueError):
    """A listing that does not have the expected shape. The message names where it came from and what
    was missing, so that a run stops loudly instead of mailing an empty digest."""


class FetchError(RuntimeError):
    """The listing could not be downloaded (HTTP error, timeouts, retries exhausted)."""
