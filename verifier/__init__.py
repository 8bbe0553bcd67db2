"""parity-verifier: proves that an OCI registry holds the same artifact bytes as a filesystem store."""

__version__ = "0.1.0"
