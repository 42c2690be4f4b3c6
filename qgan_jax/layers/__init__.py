"""Layers: quaternion, PHC, normalisation (NHWC activations, HWIO kernels)."""
