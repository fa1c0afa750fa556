"""In-container launcher daemon for an SGLang image on rented GPU machines."""

__version__ = "0.1.0"
