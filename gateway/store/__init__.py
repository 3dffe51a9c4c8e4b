"""The results database: the stored analyses and their schema's migrations."""
