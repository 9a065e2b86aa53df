"""triton-moe-ids: a Mixture-of-Experts network-intrusion detector served on NVIDIA Triton."""

__version__ = "0.1.0"
