"""Distributed MNIST training in TensorFlow 2, driven by the TF_CONFIG that Kubeflow's TFJob injects.

Run it as ``python -m trainer``; ``trainer.main`` is the entry point. Importing this package is cheap:
TensorFlow is imported only once the flags have been checked.
"""
