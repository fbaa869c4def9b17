"""Getting plans to the platforms: apply (batches, retries, ledger commits per batch, the platforms' waits),
the engine that runs plan and apply for a project (its planning half in ``engine_planning``), the fast path
that suppresses converted members at once, the real-time path that follows events and expiries
(``realtime``, reading ``realtime_sources``), and reconcile, which reads audiences back and repairs what drifted.
"""
