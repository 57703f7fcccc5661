"""Named gin configurations of the DNC.

A package, so that gin finds `include 'models/dnc/configs/...'` through the Python path
from any working directory.
"""
