"""Identifiers as each platform wants them: normalise, validate and hash, per row (``rows``) or per
column (``columnar``, the fast path for large segments, proved equal to the per-row rules).
"""
