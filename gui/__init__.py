"""The desktop visualizer (lands with issue 6); only `topograd gui` imports it, lazily."""
