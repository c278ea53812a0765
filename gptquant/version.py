"""The package version, in a core module of its own so any layer can name it (Ray workers compare theirs
with the driver's)."""
__version__ = "0.1.0"
