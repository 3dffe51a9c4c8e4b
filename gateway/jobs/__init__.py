"""Bulk analysis jobs: a source expanded into photos, queued, analysed by workers, and the job's
end announced to its webhook."""
