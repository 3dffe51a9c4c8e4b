"""The FastAPI gateway: fetch, decode, run the models through Triton, store, report."""
