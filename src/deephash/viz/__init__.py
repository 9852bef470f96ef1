"""Plots: t-SNE maps and precision-recall curves."""
