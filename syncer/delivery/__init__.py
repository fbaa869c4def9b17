"""Getting plans to the platforms: apply (batches, retries, ledger commits per batch, the platforms' waits),
the engine that runs plan and apply for a project, the fast path that suppresses converted members at
once, and reconcile, which reads audiences back and repairs what drifted.
"""
