"""Getting plans to the platforms: apply (batches, retries, ledger commits per batch), the engine that
runs plan and apply for a project, and the fast path that suppresses converted members at once.
"""
