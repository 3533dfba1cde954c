"""Datasets: RetinaFace annotations, the generated demo set, and the WIDER FACE evaluation."""
