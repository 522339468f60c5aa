"""ONNX in and out: `export` writes a model's evaluation (or training) form as an ONNX graph, `importer` turns an
ONNX file into a readable `.nn` model and its parameters, and `backend` runs nnc as an ONNX backend for the
operator conformance tests. The `onnx` package is an optional extra (`pip install -e '.[onnx]'`); it is
imported only inside these modules' functions, so `import nnc` never needs it."""
