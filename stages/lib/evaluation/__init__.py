"""Measuring a model: metrics, noise, baselines, explanations, plot data and images."""
