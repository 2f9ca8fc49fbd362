"""Typed stubs of the command-line extension."""

__version__: str

def main(argv: list[str]) -> int:
    """Run the ppyc command line with ``argv``; return the exit status."""
