"""Torch-free inference (ONNX policies served with numpy and onnxruntime): see the export issue.

This package must import only the standard library, numpy and onnxruntime.
"""
