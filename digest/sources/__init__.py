"""Listing sources: each module turns one site's daily listing into ``digest.models.Listing``."""

from digest.sources.errors import FetchError, HostNotFoundError, ListingFormatError

__all__ = ["FetchError", "HostNotFoundError", "ListingFormatError"]
