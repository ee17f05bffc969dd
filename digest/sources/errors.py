"""Errors every listing source raises."""


class ListingFormatError(ValueError):
    """A listing that does not have the expected shape. The message names where it came from and what
    was missing, so that a run stops loudly instead of mailing an empty digest."""


class FetchError(RuntimeError):
    """The listing could not be downloaded (HTTP error, timeouts, retries exhausted)."""


class HostNotFoundError(FetchError):
    """The listing's host name does not resolve (DNS): no network, or a wrong URL. Not retried: waiting
    does not make a name resolve, and the operator should hear it at once."""
