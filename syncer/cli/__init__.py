"""The command line (``syncer ...``): the only code that prints.

``main`` holds the click group and the plan/apply/run commands; ``demo``, ``fast_path``, ``reconcile`` and
``reports`` add their commands; ``common`` and ``output`` hold shared options and the tables.
"""
