"""From segment to plan: extraction, the diff against what each audience holds (local DuckDB or in the
warehouse), the plan with its content hash, and the gates that can hold it.
"""
