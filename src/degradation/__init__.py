"""Reproduce the degradation problem of deep plain networks and its residual fix.

Importing the package makes the configuration schemas and resolvers known to Hydra, so that
Hydra's compose API works on ``conf/`` as the command line does (no torch import here).
"""

from degradation.config import register as _register

_register()
