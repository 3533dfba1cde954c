"""Training data: image crops/augmentation and anchor-target assignment (numpy + OpenCV only)."""
