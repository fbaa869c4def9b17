"""The demo, apart from the engine: a sample warehouse generator and the set-up of ``syncer demo``."""
