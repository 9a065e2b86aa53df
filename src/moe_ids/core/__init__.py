"""What every stage shares and nothing else: the feature schema, labels, the serving contract (tensor names,
shapes, dtypes, config parameter keys), preprocessing, the artifact directory, the drift reference and ONNX Runtime
sessions. Depends on numpy alone, so the Triton backends can import it without torch or pandas."""
