"""Readers for foreign checkpoint formats (PyTorch .pth without torch)."""
