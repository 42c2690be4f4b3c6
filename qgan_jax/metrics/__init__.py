"""Evaluation metrics: FID Inception-v3 port, FID and Inception Score."""
