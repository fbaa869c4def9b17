"""From segment to plan: extraction, the diff against what each audience holds (local DuckDB or in the
warehouse), the members the platform sees as one person (``shared``), the plan with its content hash,
and the gates that can hold it.
"""
