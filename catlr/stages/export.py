"""catlr export: a model as an ONNX graph that takes what a caller has, decoded images.

The graph (opset 13, every product in float64, as `catlr predict` computes):

    image        (N, size, size, 3) uint8   RGB, as catlr's decoder gives it (images.py:
                                            EXIF rotation, the model's fit, its size)
    Cast, / 255, Flatten                    X (N, n_x): each image flattened row by row,
                                            pixel by pixel, R G B: the course's order
    MatMul w, Add b, Sigmoid, Squeeze
    probability  (N,) float64               of the positive class (classes[1])
    label        (N,) int64                 1 where probability > the threshold

Its metadata holds the class names, the size, the fit rule, the threshold and the
normalization, so an app decodes and labels as catlr does. The onnx package is an
optional extra (catlr[onnx]).
"""

from __future__ import annotations

import json
import os

import numpy as np

from ..errors import CatlrError
from ..files.outputs import KINDS, Kind, atomic_path
from ..learn.design import NORMALIZATION, SCALE
from ..runs.predictor import Predictor
from ..text import printable
from ..version import __version__

OPSET = 13       # onnxruntime 1.8 and later, and most mobile and web runtimes, run it
IR_VERSION = 7   # the IR of opset 13: a newer one would refuse older runtimes for nothing
INPUT, PROBABILITY, LABEL = "image", "probability", "label"



def _exported(path) -> bool:
    """An ONNX graph catlr exported: its ModelProto opens with ir_version (field 1) and then
    producer_name (field 2) "catlr", as protobuf writes fields in order (graph() sets it)."""
    with open(path, "rb") as f:
        head = f.read(16)
    return head[:1] == b"\x08" and b"\x12\x05catlr" in head[2:12]


KINDS["onnx"] = Kind("an ONNX graph", False, _exported, ".onnx")

def _text(name: str, value: str) -> str:
    """`value` as the UTF-8 that ONNX strings must be; a name that is not (a class folder
    named in bytes no encoding holds) cannot be represented."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise CatlrError(f"cannot export: the {name} '{printable(value)}' is not valid UTF-8, "
                         "which ONNX metadata must be; rename the class folder and retrain") \
            from None
    return value


def metadata(predictor: Predictor) -> dict:
    """The graph's metadata_props: what an app needs to decode and label as catlr does."""
    meta = predictor.meta
    return {
        "classes": json.dumps([_text("class name", c) for c in predictor.classes],
                              ensure_ascii=False),
        "positive": predictor.classes[1],
        "image_size": str(predictor.size),
        "fit": predictor.fit,
        "threshold": repr(float(predictor.threshold)),
        "normalization": NORMALIZATION,
        "layout": "NHWC uint8 RGB, EXIF rotation applied, resized by the fit rule",
        "data": printable(meta.get("data") or ""),
        "test_accuracy": "" if meta.get("test_accuracy") is None else repr(meta["test_accuracy"]),
        "catlr_version": __version__,
    }


def graph(predictor: Predictor):
    """The onnx.ModelProto of `predictor`'s model (the module's docstring draws it)."""
    try:
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        raise CatlrError("catlr export --onnx needs the onnx package, install it with "
                         "pip install 'catlr[onnx]'") from None
    props = metadata(predictor)  # first: it refuses what ONNX cannot hold
    size = predictor.size
    w, b = predictor.weights()
    consts = [numpy_helper.from_array(a, name) for name, a in (
        ("scale", np.array(SCALE, np.float64)), ("w", w.reshape(-1, 1)),
        ("b", np.array([b], np.float64)),
        ("threshold", np.array(float(predictor.threshold), np.float64)),
        ("column", np.array([1], np.int64)))]
    nodes = [
        helper.make_node("Cast", [INPUT], ["pixels"], to=TensorProto.DOUBLE),
        helper.make_node("Div", ["pixels", "scale"], ["x"]),
        helper.make_node("Flatten", ["x"], ["X"], axis=1),
        helper.make_node("MatMul", ["X", "w"], ["wx"]),
        helper.make_node("Add", ["wx", "b"], ["z"]),
        helper.make_node("Sigmoid", ["z"], ["a"]),
        helper.make_node("Squeeze", ["a", "column"], [PROBABILITY]),
        helper.make_node("Greater", [PROBABILITY, "threshold"], ["positive"]),
        helper.make_node("Cast", ["positive"], [LABEL], to=TensorProto.INT64),
    ]
    g = helper.make_graph(
        nodes, "catlr",
        [helper.make_tensor_value_info(INPUT, TensorProto.UINT8, ["N", size, size, 3])],
        [helper.make_tensor_value_info(PROBABILITY, TensorProto.DOUBLE, ["N"]),
         helper.make_tensor_value_info(LABEL, TensorProto.INT64, ["N"])],
        consts)
    model = helper.make_model(g, producer_name="catlr", producer_version=__version__,
                              opset_imports=[helper.make_opsetid("", OPSET)],
                              doc_string=f"P({predictor.classes[1]}) of uint8 RGB images "
                                         f"(N, {size}, {size}, 3) decoded as catlr does")
    model.ir_version = IR_VERSION
    helper.set_model_props(model, props)
    onnx.checker.check_model(model)
    return model


def export(model_path, out, *, threshold: float | None = None) -> dict:
    """Write the model at `model_path` to `out` (.onnx) atomically; returns what was written:
    the file, its size in bytes, its input and outputs, its metadata."""
    predictor = Predictor.load(model_path, threshold)
    model = graph(predictor)
    with atomic_path(out, "onnx") as tmp, open(tmp, "wb") as f:
        written = f.write(model.SerializeToString())
    size = predictor.size
    return {"onnx": os.fspath(out), "model": os.fspath(model_path), "bytes": written,
            "opset": OPSET, "input": {INPUT: f"uint8 (N, {size}, {size}, 3)"},
            "outputs": {PROBABILITY: "float64 (N,)", LABEL: "int64 (N,)"},
            "metadata": {p.key: p.value for p in model.metadata_props}}
