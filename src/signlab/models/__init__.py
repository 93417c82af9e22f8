"""Model specs and builders: Keras CNNs and scikit-learn MLPs, with the published presets."""
