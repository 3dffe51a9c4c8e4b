"""Each network from conversion through a real Triton server, against its oracle."""
