"""Files the documentation's commands read that no code block can hold (ONNX models), made the same way each
time: PyTorch's LeNet-5 exported with seed 0 (the import and fine-tuning transcripts of docs/onnx.md), and a
graph with operators nnc does not import (its error transcript). tests/test_doc_figures.py writes them into
the folder a page's commands run in, by name."""

from __future__ import annotations

import warnings
from pathlib import Path


def lenet5_onnx(path: Path) -> None:
    """PyTorch's LeNet-5 (tests/test_onnx_pytorch.py's), seed 0, exported with the input `image` [B, 1, 28, 28]."""
    import torch
    from test_onnx_pytorch import LeNet5

    torch.manual_seed(0)
    model = LeNet5().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.randn(2, 1, 28, 28),), str(path), input_names=["image"],
                          output_names=["logits"], dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
                          dynamo=False)


def detector_onnx(path: Path) -> None:
    """Two DeformConv nodes and a RoiAlign: operators nnc has no counterpart for."""
    import onnx
    from onnx import TensorProto, helper

    nodes = [helper.make_node("DeformConv", ["x", "w", "offset"], ["d1"]),
             helper.make_node("DeformConv", ["d1", "w", "offset"], ["d2"]),
             helper.make_node("RoiAlign", ["d2", "rois", "index"], ["y"])]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4]),
              helper.make_tensor_value_info("w", TensorProto.FLOAT, [1, 1, 2, 2]),
              helper.make_tensor_value_info("offset", TensorProto.FLOAT, [1, 8, 3, 3]),
              helper.make_tensor_value_info("rois", TensorProto.FLOAT, [1, 4]),
              helper.make_tensor_value_info("index", TensorProto.INT64, [1])]
    graph = helper.make_graph(nodes, "detector", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)]), str(path))


DOC_FILES = {"lenet5.onnx": lenet5_onnx, "detector.onnx": detector_onnx}


def write_doc_files(names, folder: Path) -> None:
    """Write the named documentation files that DOC_FILES makes into `folder`."""
    for name in names:
        if name in DOC_FILES and not (folder / name).exists():
            DOC_FILES[name](folder / name)
