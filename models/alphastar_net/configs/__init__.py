"""Named gin configurations of the AlphaStar network.

A package, so that gin finds `include 'models/alphastar_net/configs/...'` through the Python path
from any working directory.
"""
