"""Listing sources: each module turns one site's daily listing into ``digest.models.Listing``."""

from digest.sources.errors import FetchError, ListingFormatError

__all__ = ["FetchError", "ListingFormatError"]
