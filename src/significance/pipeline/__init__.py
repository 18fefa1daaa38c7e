"""The two-stage pipeline on new images: stage 1 routes each image to its type's classifiers."""
