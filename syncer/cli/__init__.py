"""The command line (``syncer ...``): the only code that prints.

``main`` holds the click group and the plan/apply/run commands; ``demo``, ``fast_path`` and ``reports``
add their command groups; ``common`` and ``output`` hold shared options and the tables.
"""
