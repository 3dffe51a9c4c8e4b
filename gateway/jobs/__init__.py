"""Bulk jobs: a source expanded into photos (submit), queued on Dramatiq over Redis (queue),
answered by workers through the same pipeline as /v1/analyze (worker), followed (progress), and
the job's end announced to its webhook (webhooks)."""
