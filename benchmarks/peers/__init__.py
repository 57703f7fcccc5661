"""Peer scripts for `benchmarks/side_by_side.py`: each runs under the peer's own Python (see `protocol.py`)."""
