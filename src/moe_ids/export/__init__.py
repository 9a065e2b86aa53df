"""Export of the trained MoE for serving, each artifact checked against PyTorch.

``onnx_export``: fp32 ONNX graph (the serving contract); ``quantize``: INT8 dynamic quantisation;
``tensorrt_engine``: FP16 TensorRT plan where TensorRT and a GPU exist; ``verify``: checks on held-out flows;
``throughput``: in-process ONNX Runtime flows/s; ``pipeline``: all of it for ``moe-ids export``.
"""
