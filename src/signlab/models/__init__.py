"""Models: specs and builders (Keras CNNs, scikit-learn MLPs, KNN), presets, training, augmentation and the letter classifier."""
