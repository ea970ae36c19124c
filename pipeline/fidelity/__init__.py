"""Fidelity of compressed weights on real models: ``python -m pipeline.fidelity``.

Measures, per configuration (dense, int8 per-channel, palettes per tensor / grouped /
sensitivity-weighted / budgeted), bits per weight with codebooks and how well the outputs agree
with the dense model. Heavy imports happen inside the submodules' functions.
"""
