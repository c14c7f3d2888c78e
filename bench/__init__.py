"""`ra-bench`: measures the streaming engine against the physical limits of the machine."""
