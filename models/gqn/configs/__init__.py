"""Named gin configurations of GQN.

A package, so that gin finds `include 'models/gqn/configs/...'` through the Python path
from any working directory.
"""
