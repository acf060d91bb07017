"""The topograd model language and command line (the language itself lands with issue 5)."""
