"""json-workflow: take TWIST job files from hot folders, archive and route them, lose nothing."""

__version__ = "0.1.0"
